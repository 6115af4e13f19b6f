"""Layers combining several inputs, and reductions."""

from __future__ import annotations

from .base import (
    _FLOATS,
    MAX_INPUTS,
    NONNEGATIVE,
    Args,
    Out,
    Range,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _aligned,
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


@rules.rule("Add", inputs=(2, MAX_INPUTS), unbatched=True)
def add(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs (batched ones: same number of dimensions, each equal or 1;
    one without a batch is aligned from the right, as torch does)."""
    xs = _tensors(inputs)
    out = _aligned("Add", xs)
    return Out(TensorType(out.shape, _promote(xs), out.batched), args)


@rules.rule("Mul", inputs=(2, MAX_INPUTS), unbatched=True)
def mul(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs, as ``Add`` does."""
    xs = _tensors(inputs)
    out = _aligned("Mul", xs)
    macs = prod(out.shape) * (len(xs) - 1)
    return Out(TensorType(out.shape, _promote(xs), out.batched), args, macs)


_BATCH = -1
"""The batch dimension among the sizes of a whole tensor (:func:`matmul`)."""


@rules.rule("MatMul", inputs=(2, 2), unbatched=True)
def matmul(args: Args, inputs: list[Value]) -> Out:
    """``a @ b`` (torch.matmul) of two floating-point tensors of one dtype, with or without
    a batch (``x @ weight``); the batch must neither be contracted nor move from the front."""
    a, b = _tensors(inputs)
    if a.dtype != b.dtype or a.dtype not in _FLOATS:
        raise ShapeMismatch(f"MatMul needs floating-point inputs of one dtype, got {a} and {b}")
    x, y = ((_BATCH, *t.shape) if t.batched else t.shape for t in (a, b))
    if len(x) < 1 or len(y) < 1:
        raise ShapeMismatch(f"MatMul needs inputs of at least one dimension, got {a} and {b}")
    rows, cols = (x[-2],) if len(x) > 1 else (), (y[-1],) if len(y) > 1 else ()
    inner, other = x[-1], y[-2] if len(y) > 1 else y[-1]
    if _BATCH in (inner, other):
        raise ShapeMismatch(f"MatMul of {a} and {b} would sum over the batch")
    if inner != other:
        raise ShapeMismatch(f"MatMul of {a} and {b}: {inner} columns meet {other} rows")
    lead_x, lead_y = x[:-2], y[:-2]
    lead: list[int] = []
    for i in range(1, max(len(lead_x), len(lead_y)) + 1):
        p = lead_x[-i] if i <= len(lead_x) else 1
        q = lead_y[-i] if i <= len(lead_y) else 1
        if p != q and 1 not in (p, q):
            raise ShapeMismatch(f"MatMul inputs {a} and {b} differ in their leading dimensions")
        lead.insert(0, q if p == 1 else p)
    full = (*lead, *rows, *cols)
    has_batch = a.batched or b.batched
    if has_batch and (not full or full[0] != _BATCH or _BATCH in full[1:]):
        raise ShapeMismatch(f"MatMul of {a} and {b} would move the batch from the front")
    shape = full[1:] if has_batch else full
    out = TensorType(tuple(shape), a.dtype, has_batch)
    return Out(out, args, prod(shape) * inner)


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


@rules.rule("CosineSimilarity", inputs=(2, 2), ranges={"eps": NONNEGATIVE})
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
