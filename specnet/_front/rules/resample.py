"""Resampling: upsampling, pixel shuffles, fold and unfold."""

from __future__ import annotations

import math

from .base import (
    _LAYOUT,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dims,
    _ints,
    _min_rank,
    _positive,
    _slide,
    need_rank,
    ntuple,
    prod,
    tensor,
)

rules = RuleSet(stateless=True)

_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _resize(x: TensorType, args: Args, layer: str, n: int) -> TensorType:
    """``F.interpolate``'s output: ``size``, or ``floor(size * scale_factor)``."""
    size, scale = args.get("size"), args.get("scale_factor")
    if (size is None) == (scale is None):
        raise ShapeMismatch(f"{layer} needs exactly one of size and scale_factor", arg="size")
    if size is not None:
        out = _ints(args, "size", n, 1)
    else:
        factors = ntuple(scale, n)
        if len(factors) != n or not all(f > 0 for f in factors):
            raise ShapeMismatch(
                f"scale_factor {scale} must be {n} positive numbers", "scale_factor"
            )
        if not all(math.isfinite(i * f) for i, f in zip(x.shape[1:], factors, strict=True)):
            raise ShapeMismatch(f"scale_factor {scale} gives an infinite size", "scale_factor")
        out = tuple(int(i * f) for i, f in zip(x.shape[1:], factors, strict=True))
    return TensorType((x.shape[0], *_positive(x, out, "scale_factor", "the output size")), x.dtype)


@rules.rule("Upsample")
def upsample(args: Args, inputs: list[Value]) -> Out:
    """Resizes the spatial dimensions of (C, L), (C, H, W) or (C, D, H, W)."""
    x = tensor(inputs[0])
    need_rank(x, (2, 3, 4), "Upsample", "C, L or C, H, W or C, D, H, W")
    n, mode = len(x.shape) - 1, args["mode"]
    if _MODE_DIMS.get(mode, n) != n:
        raise ShapeMismatch(
            f"mode '{mode}' resizes {_MODE_DIMS[mode]} spatial dimensions, {x} has {n}", "mode"
        )
    if mode == "lanczos":
        raise ShapeMismatch("mode 'lanczos' needs antialias, which Upsample does not use", "mode")
    if args.get("align_corners") is not None and mode not in _MODE_DIMS:
        raise ShapeMismatch(f"align_corners cannot be set with mode '{mode}'", "align_corners")
    if args.get("recompute_scale_factor") and args.get("size") is not None:
        raise ShapeMismatch(
            "recompute_scale_factor applies to a scale_factor, not to a given size",
            "recompute_scale_factor",
        )
    y = _resize(x, args, "Upsample", n)
    return Out(y, args, prod(y.shape))


@rules.family(dict.fromkeys(("UpsamplingBilinear2d", "UpsamplingNearest2d")))
def upsampling_2d(name: str, _: None, args: Args, inputs: list[Value]) -> Out:
    """Resizes H and W of (C, H, W)."""
    x = tensor(inputs[0])
    need_rank(x, (3,), name, _LAYOUT[2])
    y = _resize(x, args, name, 2)
    return Out(y, args, prod(y.shape))


@rules.rule("PixelShuffle")
def pixel_shuffle(args: Args, inputs: list[Value]) -> Out:
    """(*, C * r^2, H, W) -> (*, C, H * r, W * r)."""
    x = tensor(inputs[0])
    _min_rank(x, 3, "PixelShuffle", "*, C, H, W")
    r = args["upscale_factor"]
    *lead, c, h, w = x.shape
    if r < 1 or c % (r * r):
        raise ShapeMismatch(
            f"upscale_factor {r}: the channels of {x} must be divisible by {r * r}",
            "upscale_factor",
        )
    return Out(TensorType((*lead, c // (r * r), h * r, w * r), x.dtype), args)


@rules.rule("PixelUnshuffle")
def pixel_unshuffle(args: Args, inputs: list[Value]) -> Out:
    """(*, C, H * r, W * r) -> (*, C * r^2, H, W)."""
    x = tensor(inputs[0])
    _min_rank(x, 3, "PixelUnshuffle", "*, C, H, W")
    r = args["downscale_factor"]
    *lead, c, h, w = x.shape
    if r < 1 or h % r or w % r:
        raise ShapeMismatch(
            f"downscale_factor {r} must divide the height and width of {x}", "downscale_factor"
        )
    return Out(TensorType((*lead, c * r * r, h // r, w // r), x.dtype), args)


@rules.rule("Fold")
def fold(args: Args, inputs: list[Value]) -> Out:
    """(C * kernel, blocks) -> (C, *output_size); blocks must be the number of windows."""
    x = tensor(inputs[0])
    need_rank(x, (2,), "Fold", "C * prod(kernel_size), L")
    size = _ints(args, "output_size", 2, 1)
    k, s = _ints(args, "kernel_size", 2, 1), _ints(args, "stride", 2, 1)
    p, d = _ints(args, "padding", 2), _ints(args, "dilation", 2, 1)
    ck, blocks = x.shape
    if ck % prod(k):
        raise ShapeMismatch(
            f"Fold needs dimension 1 of {x} divisible by kernel_size {_dims(k)} ({prod(k)})",
            arg="kernel_size",
        )
    want = _slide(TensorType(size), size, k, s, p, d)
    if prod(want) != blocks:
        raise ShapeMismatch(
            f"output_size {_dims(size)} holds {_dims(want)} = {prod(want)} blocks, "
            f"the input {x} has {blocks}",
            arg="output_size",
        )
    return Out(TensorType((ck // prod(k), *size), x.dtype), args, prod(x.shape))


@rules.rule("Unfold")
def unfold(args: Args, inputs: list[Value]) -> Out:
    """(C, H, W) -> (C * prod(kernel_size), blocks)."""
    x = tensor(inputs[0])
    need_rank(x, (3,), "Unfold", _LAYOUT[2])
    k, s = _ints(args, "kernel_size", 2, 1), _ints(args, "stride", 2, 1)
    p, d = _ints(args, "padding", 2), _ints(args, "dilation", 2, 1)
    blocks = _slide(x, x.shape[1:], k, s, p, d)
    return Out(TensorType((x.shape[0] * prod(k), prod(blocks)), x.dtype), args)
