"""Convolutions and transposed convolutions."""

from __future__ import annotations

from collections.abc import Sequence

from .base import (
    _LAYOUT,
    _N,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dims,
    _fill,
    _float,
    _ints,
    _one,
    _slide,
    need_rank,
    prod,
)

rules = RuleSet()


def _groups(args: Args, c: int, x: TensorType) -> int:
    g: int = args["groups"]
    if g < 1 or c % g:
        raise ShapeMismatch(f"groups {g} does not divide the {c} input channels of {x}", "groups")
    if args["out_channels"] % g:
        raise ShapeMismatch(
            f"groups {g} does not divide out_channels {args['out_channels']}", arg="groups"
        )
    return g


def _conv_padding(args: Args, n: int, k: Sequence[int], d: Sequence[int]) -> tuple[int, ...]:
    """Padding per side; for ``'same'`` the larger side of torch's asymmetric padding."""
    pad = args["padding"]
    if pad == "valid":
        return (0,) * n
    if pad == "same":
        if any(s != 1 for s in _ints(args, "stride", n)):
            raise ShapeMismatch(f"padding 'same' needs stride 1, got {args['stride']}", "padding")
        return tuple((di * (ki - 1) + 1) // 2 for ki, di in zip(k, d, strict=True))
    return _ints(args, "padding", n)


@rules.family({f"Conv{v}": n for n, v in _N.items()}, infers=("in_channels",), fresh=True)
def conv(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """torch's convolution arithmetic; ``padding: same`` keeps the size."""
    x = _float(inputs[0], name)
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    c, size = x.shape[0], x.shape[1:]
    _fill(args, "in_channels", c, x)
    g = _groups(args, c, x)
    k, d = _ints(args, "kernel_size", n, 1), _ints(args, "dilation", n, 1)
    p = _conv_padding(args, n, k, d)
    mode = args.get("padding_mode", "zeros")
    for i, pi in zip(size, p, strict=True):
        if (mode == "reflect" and pi >= i) or (mode == "circular" and pi > i):
            raise ShapeMismatch(
                f"padding {_one(p)} is too large for padding_mode '{mode}' on {x}", arg="padding"
            )
    if args["padding"] == "same":
        out = size
    else:
        out = _slide(x, size, k, _ints(args, "stride", n, 1), p, d)
    macs = prod(out) * args["out_channels"] * (c // g) * prod(k)
    return Out(TensorType((args["out_channels"], *out), x.dtype), args, macs)


@rules.family({f"ConvTranspose{v}": n for n, v in _N.items()}, infers=("in_channels",))
def conv_transpose(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``."""
    x = _float(inputs[0], name)
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    c, size = x.shape[0], x.shape[1:]
    _fill(args, "in_channels", c, x)
    g = _groups(args, c, x)
    k, s = _ints(args, "kernel_size", n, 1), _ints(args, "stride", n, 1)
    p, d = _ints(args, "padding", n), _ints(args, "dilation", n, 1)
    op = _ints(args, "output_padding", n)
    if any(o >= si and o >= di for o, si, di in zip(op, s, d, strict=True)):
        raise ShapeMismatch(
            f"output_padding {_one(op)} must be smaller than the stride {_one(s)} "
            f"or the dilation {_one(d)}",
            arg="output_padding",
        )
    out = [
        (i - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
        for i, ki, si, pi, di, oi in zip(size, k, s, p, d, op, strict=True)
    ]
    if any(o < 1 for o in out):
        raise ShapeMismatch(
            f"padding {_one(p)} leaves an empty output {_dims(out)} (input {x}, "
            f"kernel_size {_one(k)}, stride {_one(s)})",
            arg="padding",
        )
    macs = prod(x.shape) * (args["out_channels"] // g) * prod(k)
    return Out(TensorType((args["out_channels"], *out), x.dtype), args, macs)
