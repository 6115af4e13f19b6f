"""Reshaping: flatten, unflatten and specnet's shape ops."""

from __future__ import annotations

from collections.abc import Sequence

from .base import (
    NONE,
    NONNEGATIVE,
    SIZE,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dim,
    prod,
    show,
    tensor,
)

rules = RuleSet(stateless=True)


@rules.rule("Flatten")
def flatten(args: Args, inputs: list[Value]) -> Out:
    """Merges ``start_dim`` .. ``end_dim`` (the batch is 0 and must stay out)."""
    x = tensor(inputs[0])
    a = _dim(args["start_dim"], x, "start_dim")
    b = _dim(args["end_dim"], x, "end_dim")
    if a > b:
        raise ShapeMismatch(
            f"start_dim {args['start_dim']} comes after end_dim {args['end_dim']} for {x}",
            arg="start_dim",
        )
    shape = (*x.shape[:a], prod(x.shape[a : b + 1]), *x.shape[b + 1 :])
    return Out(TensorType(shape, x.dtype), args)


def _fill(shape: Sequence[int], total: int, x: TensorType, arg: str, what: str) -> tuple[int, ...]:
    """``shape`` with its -1 (at most one) filled in so it holds ``total`` values."""
    if list(shape).count(-1) > 1 or any(v < 1 and v != -1 for v in shape):
        raise ShapeMismatch(f"{what} {list(shape)} may have one -1, other sizes must be > 0", arg)
    known = prod([v for v in shape if v != -1])
    if (total % known) if -1 in shape else (total != known):
        raise ShapeMismatch(f"{what} {list(shape)} does not fit {x} ({total} values)", arg=arg)
    return tuple(total // known if v == -1 else v for v in shape)


@rules.rule("Unflatten")
def unflatten(args: Args, inputs: list[Value]) -> Out:
    """Splits ``dim`` (not the batch, 0) into ``unflattened_size`` (one entry may be -1)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    what = f"Unflatten of dim {args['dim']} to"
    sizes = _fill(args["unflattened_size"], x.shape[d], x, "unflattened_size", what)
    return Out(TensorType((*x.shape[:d], *sizes, *x.shape[d + 1 :]), x.dtype), args)


@rules.rule("Reshape")
def reshape(args: Args, inputs: list[Value]) -> Out:
    """Each sample becomes ``shape`` (one entry may be -1)."""
    x = tensor(inputs[0])
    return Out(
        TensorType(_fill(args["shape"], prod(x.shape), x, "shape", "Reshape to"), x.dtype), args
    )


@rules.rule("Permute")
def permute(args: Args, inputs: list[Value]) -> Out:
    """Reorders all dimensions; the batch (0) must stay first."""
    x = tensor(inputs[0])
    dims = args["dims"]
    full = len(x.shape) + 1
    if len(dims) != full or sorted(d % full for d in dims if -full <= d < full) != list(
        range(full)
    ):
        raise ShapeMismatch(
            f"dims {dims} is not an order of the {full} dimensions of {x} with its batch", "dims"
        )
    if dims[0] % full:
        raise ShapeMismatch(f"dims {dims} must keep the batch first (start with 0)", arg="dims")
    return Out(TensorType(tuple(x.shape[d % full - 1] for d in dims[1:]), x.dtype), args)


@rules.rule("Transpose")
def transpose(args: Args, inputs: list[Value]) -> Out:
    """Swaps two dimensions, neither of them the batch (0)."""
    x = tensor(inputs[0])
    a, b = _dim(args["dim0"], x, "dim0"), _dim(args["dim1"], x, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return Out(TensorType(tuple(shape), x.dtype), args)


@rules.rule("Index")
def index(args: Args, inputs: list[Value]) -> Out:
    """``x.select(dim, index)``: removes ``dim`` (not the batch, 0)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    i, size = args["index"], x.shape[d]
    if not -size <= i < size:
        raise ShapeMismatch(
            f"index {i} is out of range for dim {args['dim']} of {x} (size {size})", arg="index"
        )
    return Out(TensorType(x.shape[:d] + x.shape[d + 1 :], x.dtype), args)


@rules.rule("Narrow", ranges={"length": NONNEGATIVE})
def narrow(args: Args, inputs: list[Value]) -> Out:
    """``x.narrow(dim, start, length)``: ``length`` positions from ``start`` along ``dim``
    (not the batch, 0)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    size, start, length = x.shape[d], args["start"], args["length"]
    if not -size <= start <= size:
        raise ShapeMismatch(
            f"start {start} is out of range for dim {args['dim']} of {x} (size {size})", arg="start"
        )
    first = start + size if start < 0 else start
    if first + length > size:
        raise ShapeMismatch(
            f"start {start} + length {length} exceeds dim {args['dim']} of {x} (size {size})",
            arg="length",
        )
    shape = list(x.shape)
    shape[d] = length
    return Out(TensorType(tuple(shape), x.dtype), args)


@rules.rule("Chunk", ranges={"chunks": SIZE})
def chunk(args: Args, inputs: list[Value]) -> Out:
    """``x.chunk(chunks, dim)``: a tuple of pieces of ``ceil(size / chunks)`` along ``dim``
    (not the batch, 0), the last one smaller, as many as that takes (maybe fewer than
    ``chunks``)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    size = x.shape[d]
    step = -(-size // args["chunks"])
    pieces = []
    for start in range(0, size, step):
        shape = list(x.shape)
        shape[d] = min(step, size - start)
        pieces.append(TensorType(tuple(shape), x.dtype))
    return Out(tuple(pieces), args)


@rules.rule("Select", unbatched=True)
def select(args: Args, inputs: list[Value]) -> Out:
    """Element ``index`` of a tuple value, e.g. ``output`` of an LSTM's ``(output, (h, c))``."""
    v, i = inputs[0], args["index"]
    if v == NONE:
        raise ShapeMismatch("Select picks from a tuple, but its input is None")
    if isinstance(v, TensorType):
        raise ShapeMismatch(f"Select picks from a tuple, but its input is the tensor {v}")
    if not -len(v) <= i < len(v):
        raise ShapeMismatch(f"index {i} is out of range for {show(v)} ({len(v)} elements)", "index")
    if v[i] == NONE:
        raise ShapeMismatch(f"index {i} of {show(v)} picks None", arg="index")
    return Out(v[i], args)
