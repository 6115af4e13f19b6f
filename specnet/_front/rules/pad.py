"""Padding layers."""

from __future__ import annotations

from .base import (
    _LAYOUT,
    _N,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _ints,
    _min_rank,
    _positive,
    _spatial,
    tensor,
)

rules = RuleSet(stateless=True)

_PADS = {
    f"{mode}Pad{v}": (n, mode)
    for mode in ("Constant", "Zero", "Reflection", "Replication", "Circular")
    for n, v in _N.items()
}


@rules.family(_PADS)
def pad(name: str, param: tuple[int, str], args: Args, inputs: list[Value]) -> Out:
    """``padding`` is (left, right[, top, bottom[, front, back]]), last dimension first;
    negative values crop."""
    n, mode = param
    x = tensor(inputs[0])
    if mode in ("Constant", "Zero"):
        _min_rank(x, n, name, _LAYOUT[n].split(", ", 1)[1])
    else:
        _spatial(x, n, name)
    p = _ints(args, "padding", 2 * n, low=-(2**62))
    shape = list(x.shape)
    for i in range(n):
        lo, hi = p[2 * i], p[2 * i + 1]
        size = shape[-1 - i]
        if (mode == "Reflection" and max(lo, hi) >= size) or (
            mode == "Circular" and max(lo, hi) > size
        ):
            raise ShapeMismatch(
                f"padding {args['padding']} is too large for {name} on {x}: "
                f"{mode.lower()} padding must be {'below' if mode == 'Reflection' else 'at most'} "
                f"the input size",
                arg="padding",
            )
        shape[-1 - i] = size + lo + hi
    return Out(TensorType(_positive(x, shape, "padding", "the padded shape"), x.dtype), args)
