"""Layers combining several inputs, and reductions."""

from __future__ import annotations

from .base import (
    _FLOATS,
    MAX_INPUTS,
    Args,
    Out,
    Range,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _broadcast,
    _dim,
    _min_rank,
    _promote,
    prod,
    tensor,
)

rules = RuleSet(stateless=True)


def _tensors(inputs: list[Value]) -> list[TensorType]:
    return [tensor(v, f"input {i + 1}") for i, v in enumerate(inputs)]


@rules.rule("Add", inputs=(2, MAX_INPUTS))
def add(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs (same number of dimensions, each equal or 1)."""
    xs = _tensors(inputs)
    shape = _broadcast("Add", xs)
    return Out(TensorType(shape, _promote(xs)), args)


@rules.rule("Mul", inputs=(2, MAX_INPUTS))
def mul(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs (same number of dimensions, each equal or 1)."""
    xs = _tensors(inputs)
    shape = _broadcast("Mul", xs)
    return Out(TensorType(shape, _promote(xs)), args, prod(shape) * (len(xs) - 1))


@rules.rule("Concat", inputs=(2, MAX_INPUTS))
def concat(args: Args, inputs: list[Value]) -> Out:
    """Joins along ``dim`` (not the batch, 0); the other dimensions must be equal."""
    xs = _tensors(inputs)
    d = _dim(args["dim"], xs[0])
    for x in xs[1:]:
        if len(x.shape) != len(xs[0].shape) or any(
            a != b for i, (a, b) in enumerate(zip(x.shape, xs[0].shape, strict=True)) if i != d
        ):
            shapes = " and ".join(str(v) for v in xs)
            raise ShapeMismatch(
                f"Concat along dim {args['dim']} needs the other dimensions equal: {shapes}"
            )
    shape = list(xs[0].shape)
    shape[d] = sum(x.shape[d] for x in xs)
    return Out(TensorType(tuple(shape), _promote(xs)), args)


@rules.rule("Mean")
def mean(args: Args, inputs: list[Value]) -> Out:
    """Averages ``dim`` (not the batch, 0), or every dimension but the batch."""
    x = tensor(inputs[0])
    if x.dtype not in _FLOATS:
        raise ShapeMismatch(f"Mean needs a floating-point input, got {x}")
    dim = args.get("dim")
    if dim is None:
        dims = set(range(len(x.shape)))
    else:
        given = [dim] if isinstance(dim, int) else list(dim)
        dims = {_dim(d, x) for d in given}
        if len(dims) != len(given):
            raise ShapeMismatch(f"dim {dim} names a dimension twice", arg="dim")
    keep = bool(args.get("keepdim"))
    shape = tuple(1 if i in dims else v for i, v in enumerate(x.shape) if keep or i not in dims)
    return Out(TensorType(shape, x.dtype), args, prod(x.shape))


@rules.rule("CosineSimilarity", inputs=(2, 2))
def cosine_similarity(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts the inputs and removes ``dim`` (not the batch, 0)."""
    xs = _tensors(inputs)
    shape = _broadcast("CosineSimilarity", xs)
    d = _dim(args["dim"], TensorType(shape))
    return Out(TensorType(shape[:d] + shape[d + 1 :], _promote(xs)), args, 3 * prod(shape))


@rules.rule("PairwiseDistance", inputs=(2, 2), ranges={"p": Range()})
def pairwise_distance(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts the inputs and takes the norm over the last dimension."""
    xs = _tensors(inputs)
    shape = _broadcast("PairwiseDistance", xs)
    _min_rank(TensorType(shape), 1, "PairwiseDistance", "..., D")
    out = shape[:-1] + ((1,) if args["keepdim"] else ())
    return Out(TensorType(out, _promote(xs)), args, prod(shape))
