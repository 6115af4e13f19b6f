"""Pooling: max, average, power, fractional, adaptive; unpooling."""

from __future__ import annotations

from collections.abc import Sequence

from .base import (
    _N,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dims,
    _ints,
    _one,
    _slide,
    _spatial,
    _stride,
    ntuple,
    prod,
    tensor,
)

rules = RuleSet(stateless=True)


def _pool_padding(args: Args, n: int, k: Sequence[int]) -> tuple[int, ...]:
    p = _ints(args, "padding", n) if "padding" in args else (0,) * n
    if any(2 * pi > ki for pi, ki in zip(p, k, strict=True)):
        raise ShapeMismatch(
            f"padding {_one(p)} must be at most half of kernel_size {_one(k)}", arg="padding"
        )
    return p


def _with_indices(args: Args, out: TensorType) -> Value:
    return (out, TensorType(out.shape, "int64")) if args.get("return_indices") else out


@rules.family({f"{kind}Pool{v}": n for kind in ("Max", "Avg", "LP") for n, v in _N.items()})
def pool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """Max, average and power-average pooling (torch's ``pooling_output_shape``).

    ``return_indices`` makes the output ``(output, indices)``, the indices int64.
    """
    x = tensor(inputs[0])
    if name.startswith("LP") and args["norm_type"] == 0:
        raise ShapeMismatch("norm_type must not be 0 (torch refuses it)", arg="norm_type")
    if args.get("divisor_override") == 0:
        raise ShapeMismatch("divisor_override must not be 0 (torch refuses it)", "divisor_override")
    _spatial(x, n, name)
    size = x.shape[-n:]
    k, s = _ints(args, "kernel_size", n, 1), _stride(args, n)
    d = _ints(args, "dilation", n, 1) if "dilation" in args else (1,) * n
    p = _pool_padding(args, n, k)
    if name in ("AvgPool3d", "LPPool3d") and any(i < ki for i, ki in zip(size, k, strict=True)):
        raise ShapeMismatch(
            f"kernel_size {_one(k)} is larger than the input {x} ({name} needs the unpadded "
            "input at least as large as the kernel)",
            arg="kernel_size",
        )
    out = _slide(x, size, k, s, p, d, ceil=bool(args["ceil_mode"]))
    y = TensorType((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(y.shape) * prod(k))


@rules.family({"FractionalMaxPool2d": 2, "FractionalMaxPool3d": 3})
def fractional_pool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """``output_size``, or ``int(size * output_ratio)``; windows are placed at random."""
    x = tensor(inputs[0])
    _spatial(x, n, name)
    size = x.shape[-n:]
    k = _ints(args, "kernel_size", n, 1)
    if (args.get("output_size") is None) == (args.get("output_ratio") is None):
        raise ShapeMismatch(f"{name} needs exactly one of output_size and output_ratio")
    if args.get("output_size") is not None:
        arg, out = "output_size", _ints(args, "output_size", n, 1)
    else:
        arg, ratio = "output_ratio", ntuple(args["output_ratio"], n)
        if len(ratio) != n or not all(0 < r < 1 for r in ratio):
            raise ShapeMismatch(f"output_ratio {args[arg]} must be {n} numbers in (0, 1)", arg=arg)
        out = tuple(int(i * r) for i, r in zip(size, ratio, strict=True))
    # torch: output + kernel - 1 <= input in 2-D, < input in 3-D
    room = 0 if n == 2 else 1
    if any(o < 1 or o + ki - 1 + room > i for o, ki, i in zip(out, k, size, strict=True)):
        raise ShapeMismatch(
            f"{arg} {_dims(out)} with kernel_size {_one(k)} does not fit the input {x}", arg=arg
        )
    y = TensorType((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(y.shape) * prod(k))


@rules.family({f"Adaptive{kind}Pool{v}": n for kind in ("Max", "Avg") for n, v in _N.items()})
def adaptive_pool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """The output size is ``output_size``; in 2-D and 3-D a ``null`` entry keeps that
    input size."""
    x = tensor(inputs[0])
    _spatial(x, n, name)
    size = x.shape[-n:]
    want = args["output_size"]
    sizes = ntuple(want, n)
    if len(sizes) != n or (n == 1 and None in sizes):
        raise ShapeMismatch(
            f"output_size {want} must be {n} sizes"
            + (" (null only in 2-D and 3-D)" if n == 1 else ""),
            arg="output_size",
        )
    out = tuple(i if o is None else o for o, i in zip(sizes, size, strict=True))
    if any(o < 1 for o in out):
        raise ShapeMismatch(f"output_size {want} has an empty dimension", arg="output_size")
    y = TensorType((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(x.shape))


@rules.family({f"MaxUnpool{v}": n for n, v in _N.items()}, inputs=(2, 2))
def max_unpool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """Inputs ``(input, indices)`` of one shape (a MaxPool's ``return_indices`` output);
    ``(in - 1) * stride - 2 * padding + kernel_size``."""
    x, idx = tensor(inputs[0]), tensor(inputs[1], "indices")
    _spatial(x, n, name)
    if idx.shape != x.shape or idx.dtype != "int64":
        raise ShapeMismatch(f"{name} needs int64 indices shaped like its input {x}, got {idx}")
    k, s, p = _ints(args, "kernel_size", n, 1), _stride(args, n), _ints(args, "padding", n)
    out = [(i - 1) * si - 2 * pi + ki for i, ki, si, pi in zip(x.shape[-n:], k, s, p, strict=True)]
    if any(o < 1 for o in out):
        raise ShapeMismatch(f"padding {_one(p)} leaves an empty output for {x}", arg="padding")
    return Out(TensorType((*x.shape[:-n], *out), x.dtype), args)
