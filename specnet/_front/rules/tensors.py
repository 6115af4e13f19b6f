"""Tensors without a batch dimension: learned tensors, positions and masks, and ``Expand``,
which gives one the batch.

A ``Parameter`` or ``Buffer`` takes no input: the graph's module holds the tensor under the
node's name. ``Arange`` and ``CausalMask`` read one size of their input. None of these values
has a batch dimension (:attr:`~.base.TensorType.batched` is false); layers registered with
``unbatched=True`` take them, ``Add`` and ``Mul`` broadcast them against batched tensors.
"""

from __future__ import annotations

import math

from .base import (
    _FLOATS,
    SIZE,
    Args,
    Out,
    Range,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dim,
    batched,
    prod,
    tensor,
)

rules = RuleSet(stateless=True)

_INT_RANGES = {
    "bool": (0, 1),
    "uint8": (0, 2**8 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
"""The values of torch's integer dtypes (and bool, whose 0 and 1 are false and true)."""
_EXACT = {"float16": 2**11, "bfloat16": 2**8, "float32": 2**24, "float64": 2**53}
"""Up to where a floating-point dtype holds every whole number."""
_NORMAL = ("normal", "trunc_normal")
_READS = {"value": ("constant",), "mean": _NORMAL, "std": _NORMAL}
"""The arguments each ``init`` reads; the others must be left out."""
HELD_RANGES = {"shape": SIZE, "std": Range(0, low_open=True)}
CAUSAL_DTYPES = ("bool", *_FLOATS)
"""The dtypes of a causal mask: true where hidden, or -inf where hidden."""


def _held(name: str, args: Args) -> Out:
    """The stored tensor: ``shape`` is its full shape (no batch), ``init`` fills it."""
    shape, dtype, init = tuple(args["shape"]), args["dtype"], args["init"]
    if name == "Parameter" and dtype not in _FLOATS:
        raise ShapeMismatch(
            f"a Parameter is learned, so its dtype is floating-point ({', '.join(_FLOATS)}), "
            f"not {dtype}",
            arg="dtype",
        )
    for arg, reads in _READS.items():
        if args.get(arg) is not None and init not in reads:
            which = " or ".join(reads)
            raise ShapeMismatch(f"{arg} is read by init {which} only, not {init}", arg=arg)
    if init in _NORMAL and dtype not in _FLOATS:
        raise ShapeMismatch(f"init {init} draws floating-point numbers; dtype is {dtype}", "init")
    if init == "constant":
        _constant(args.get("value"), dtype)
    if init == "arange":
        n = prod(shape)
        if dtype == "bool" or n - 1 > _INT_RANGES.get(dtype, (0, _EXACT.get(dtype, n)))[1]:
            raise ShapeMismatch(
                f"init arange counts 0..{n - 1}, which {dtype} does not hold", arg="dtype"
            )
    return Out(TensorType(shape, dtype, batched=False), args)


def _constant(value: float | None, dtype: str) -> None:
    if value is None:
        raise ShapeMismatch("init constant needs a value", arg="init")
    bounds = _INT_RANGES.get(dtype)
    if bounds is None:
        return
    if not math.isfinite(value) or value != int(value) or not bounds[0] <= value <= bounds[1]:
        what = "0 or 1" if dtype == "bool" else f"a whole number in {bounds[0]}..{bounds[1]}"
        raise ShapeMismatch(f"value {value} is not {what}, as dtype {dtype} needs", arg="value")


@rules.rule("Parameter", inputs=(0, 0), ranges=HELD_RANGES, stateless=False)
def parameter(args: Args, inputs: list[Value]) -> Out:
    """A learned tensor of ``shape`` (no batch dimension)."""
    return _held("Parameter", args)


@rules.rule("Buffer", inputs=(0, 0), ranges=HELD_RANGES)
def buffer(args: Args, inputs: list[Value]) -> Out:
    """A tensor of ``shape`` (no batch dimension) that is not learned."""
    return _held("Buffer", args)


@rules.rule("Expand", inputs=(2, 2), unbatched=True)
def expand(args: Args, inputs: list[Value]) -> Out:
    """``x.expand(like.shape[0], -1, ...)``: a tensor without a batch whose first dimension
    is 1 becomes a batch of it, as large as ``like``'s (batched) batch."""
    x, like = tensor(inputs[0]), batched(inputs[1], "Expand", "second input")
    if x.batched:
        raise ShapeMismatch(f"Expand gives a tensor the batch, but its first input {x} has one")
    if not x.shape or x.shape[0] != 1:
        raise ShapeMismatch(
            f"Expand's first input {x} must have a first dimension of 1, which becomes the "
            f"batch (of its second input {like})"
        )
    return Out(TensorType(x.shape[1:], x.dtype), args)


@rules.rule("Arange")
def arange(args: Args, inputs: list[Value]) -> Out:
    """``torch.arange(x.shape[dim])``: int64 positions ``[n]`` without a batch dimension."""
    x = tensor(inputs[0])
    n = x.shape[_dim(args["dim"], x)]
    return Out(TensorType((n,), "int64", batched=False), args)


@rules.rule("CausalMask")
def causal_mask(args: Args, inputs: list[Value]) -> Out:
    """The ``[T, T]`` mask hiding later positions, ``T = x.shape[dim]``, without a batch:
    true above the diagonal, or ``-inf`` there and 0 elsewhere for a float dtype."""
    x = tensor(inputs[0])
    n = x.shape[_dim(args["dim"], x)]
    return Out(TensorType((n, n), args["dtype"], batched=False), args)
