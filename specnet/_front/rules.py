"""The shape rule of every layer type: torch.nn's layers and specnet's ops.

Each family of layers has one rule, registered with :func:`specnet._front.shapes.rule`
(or :func:`family` for layers that differ only in a number, like ``Conv1d`` ..
``Conv3d``). A rule gets the layer's arguments with torch's defaults filled in
(:func:`with_defaults`) and the per-sample values flowing in, and returns the
output value, the arguments with the inferred ones filled in and the
multiply-accumulates of one sample (see :class:`specnet._front.shapes.Out`).

Conventions, since specnet's batch dimension is always first and implicit:

- shapes here never include the batch; arguments that name a dimension
  (``dim``, ``start_dim``, ``dims`` ...) count it as 0, like torch does on the
  real tensor, and a rule refuses those that would move or merge the batch;
- a layer whose torch input may be "batched or unbatched" gets exactly the
  per-sample rank that makes the real tensor batched, so torch never mistakes
  the batch for a channel dimension (pools and pads, which treat every channel
  alike, also take a sample without its channel dimension);
- RNN/LSTM/GRU hidden states are described per sample as
  ``(num_layers * directions, hidden)``; in the real tensors torch puts the
  batch at dimension 1 there (``h_n`` is ``(D * num_layers, N, H)`` even with
  ``batch_first=True``).

Plain Python only: nothing here imports torch.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .shapes import (
    INFERS,
    MAX_INPUTS,
    RULES,
    Out,
    RuleFn,
    ShapeMismatch,
    T,
    Value,
    infer,
    need_rank,
    ntuple,
    prod,
    rule,
    show,
    tensor,
)

if TYPE_CHECKING:
    from .registry import TypeDef

__all__ = ["INFERS", "RULES", "family", "with_defaults"]

Args = dict[str, Any]
P = TypeVar("P")
FamilyFn = Callable[[str, P, Args, list[Value]], Out]


def with_defaults(t: TypeDef, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a spec gave, with torch's defaults for the others.

    Required arguments the spec left out stay absent, and so do inferred ones
    (even where torch has a default, like ``Transformer.d_model``): the shape
    rule fills those in. Defaults are copied, so rules may change them.
    """
    out = dict(args)
    for name, default in _defaults(t):
        if name not in out:
            out[name] = copy.deepcopy(default) if isinstance(default, (list, dict)) else default
    return out


@functools.cache
def _defaults(t: TypeDef) -> tuple[tuple[str, Any], ...]:
    """The arguments :func:`with_defaults` may fill in, with their defaults."""
    inferred = t.infers or INFERS.get(t.name, ())
    return tuple((p.name, p.default) for p in t.params if not p.required and p.name not in inferred)


def family(
    table: Mapping[str, P],
    *,
    infers: tuple[str, ...] = (),
    inputs: tuple[int, int | None] = (1, 1),
) -> Callable[[FamilyFn[P]], FamilyFn[P]]:
    """Register ``fn(name, table[name], args, inputs)`` as the rule of each name in ``table``."""

    def add(fn: FamilyFn[P]) -> FamilyFn[P]:
        for name, param in table.items():
            rule(name, infers=infers, inputs=inputs)(_bind(fn, name, param))
        return fn

    return add


def _bind(fn: FamilyFn[P], name: str, param: P) -> RuleFn:
    def bound(args: Args, inputs: list[Value]) -> Out:
        return fn(name, param, args, inputs)

    bound.__name__ = bound.__qualname__ = f"{fn.__name__}[{name}]"
    bound.__doc__ = fn.__doc__
    return bound


# -- helpers -------------------------------------------------------------------

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INTS = ("int32", "int64")
_PROMOTION = ("bool", "uint8", "int8", "int16", "int32", "int64", *_FLOATS)
_LAYOUT = {1: "C, L", 2: "C, H, W", 3: "C, D, H, W"}


def _float(v: Value, layer: str) -> T:
    """The single tensor input of a layer with weights, which must be floating-point."""
    x = tensor(v)
    if x.dtype not in _FLOATS:
        raise ShapeMismatch(f"{layer} expects a floating-point input, got {x}")
    return x


def _min_rank(x: T, n: int, layer: str, layout: str) -> None:
    if len(x.shape) < n:
        dims = "dimension" if n == 1 else "dimensions"
        raise ShapeMismatch(f"{layer} expects at least {n} {dims} per sample ({layout}), got {x}")


_SPATIAL = {n: ", ".join(layout.split(", ")[1:]) + " or " + layout for n, layout in _LAYOUT.items()}


def _spatial(x: T, n: int, layer: str) -> None:
    """Pools and pads: ``n`` spatial dimensions, with or without channels in front."""
    need_rank(x, (n, n + 1), layer, _SPATIAL[n])


def _infer(args: Args, name: str, value: Any, x: Value) -> None:
    """:func:`infer`, with the input named in the message."""
    try:
        infer(args, name, value)
    except ShapeMismatch as e:
        raise ShapeMismatch(f"{e.message} (input {show(x)})", arg=name) from None


def _ints(args: Args, name: str, n: int, low: int = 0) -> tuple[int, ...]:
    """An int-or-list argument as ``n`` ints, each at least ``low``."""
    value = args[name]
    out = ntuple(value, n)
    if len(out) != n:
        raise ShapeMismatch(
            f"{name} {value} has {len(out)} entries, this layer needs {n}", arg=name
        )
    if min(out) < low:
        raise ShapeMismatch(f"{name} {value} must be at least {low}", arg=name)
    return out


def _stride(args: Args, n: int) -> tuple[int, ...]:
    """Pools: ``stride`` defaults to the kernel size."""
    return _ints(args, "kernel_size" if args.get("stride") is None else "stride", n, low=1)


def _dims(xs: Sequence[int]) -> str:
    return "x".join(str(v) for v in xs)


def _one(xs: Sequence[int]) -> str:
    """``3`` for (3, 3), ``3x5`` otherwise."""
    return str(xs[0]) if len(set(xs)) == 1 else _dims(xs)


def _slide(
    x: T,
    size: Sequence[int],
    k: Sequence[int],
    s: Sequence[int],
    p: Sequence[int],
    d: Sequence[int],
    ceil: bool = False,
) -> tuple[int, ...]:
    """Output size of a window sliding over ``size`` (torch's ``pooling_output_shape``)."""
    out = []
    for i, ki, si, pi, di in zip(size, k, s, p, d, strict=True):
        o = (i + 2 * pi - di * (ki - 1) - 1 + (si - 1 if ceil else 0)) // si + 1
        if ceil and (o - 1) * si >= i + pi:
            o -= 1
        out.append(o)
    if min(out) < 1:
        span = [di * (ki - 1) + 1 for ki, di in zip(k, d, strict=True)]
        padded = [i + 2 * pi for i, pi in zip(size, p, strict=True)]
        spans = "" if set(d) == {1} else f" with dilation {_one(d)} spans {_one(span)},"
        raise ShapeMismatch(
            f"kernel_size {_one(k)}{spans} is larger than the padded input {_dims(padded)} "
            f"(input {x}, padding {_one(p)})",
            arg="kernel_size",
        )
    return tuple(out)


def _dim(d: int, x: T, arg: str = "dim", batch: bool = False) -> int:
    """A dimension counting the batch as 0, as an index into the per-sample shape.

    Returns -1 for the batch itself, which only ``batch=True`` allows.
    """
    full = len(x.shape) + 1
    if not -full <= d < full:
        raise ShapeMismatch(
            f"{arg} {d} is out of range for {x} (dims count the batch as 0: {-full}..{full - 1})",
            arg=arg,
        )
    d %= full
    if d == 0 and not batch:
        raise ShapeMismatch(
            f"{arg} 0 is the batch dimension; the dimensions of {x} are 1..{full - 1}", arg=arg
        )
    return d - 1


def _positive(x: T, shape: Sequence[int], arg: str, what: str) -> tuple[int, ...]:
    if any(v < 1 for v in shape):
        raise ShapeMismatch(f"{what} {list(shape)} of {x} has an empty dimension", arg=arg)
    return tuple(shape)


def _promote(xs: Sequence[T]) -> str:
    """torch's type promotion for the usual dtypes (float16 with bfloat16 gives float32)."""
    known = [x.dtype for x in xs if x.dtype in _PROMOTION]
    if len(known) < len(xs):
        return xs[0].dtype
    best = max(known, key=_PROMOTION.index)
    return "float32" if {"float16", "bfloat16"} <= set(known) and best == "bfloat16" else best


def _broadcast(layer: str, xs: Sequence[T]) -> tuple[int, ...]:
    """torch broadcasting of the full tensors: equal ranks (else the batch meets a
    sample dimension), each dimension equal or 1."""
    out = list(xs[0].shape)
    for x in xs[1:]:
        if len(x.shape) != len(out) or any(
            a != b and 1 not in (a, b) for a, b in zip(out, x.shape, strict=True)
        ):
            shapes = " and ".join(str(v) for v in xs)
            raise ShapeMismatch(f"{layer} inputs differ: {shapes}")
        out = [max(a, b) for a, b in zip(out, x.shape, strict=True)]
    return tuple(out)


# -- elementwise ---------------------------------------------------------------

ELEMENTWISE = (
    *("AlphaDropout", "Dropout", "FeatureAlphaDropout", "Identity", "Scale"),
    *("CELU", "ELU", "GELU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh"),
    *("LeakyReLU", "LogSigmoid", "Mish", "RReLU", "ReLU", "ReLU6", "SELU", "SiLU"),
    *("Sigmoid", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold"),
)


@rule(*ELEMENTWISE)
def elementwise(args: Args, inputs: list[Value]) -> Out:
    """Elementwise layers keep the shape (Dropout in eval mode is the identity)."""
    return Out(tensor(inputs[0]), args)


@family({"Dropout1d": 1, "Dropout2d": 2, "Dropout3d": 3, "Softmax2d": 2})
def channelwise(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """Layers acting per channel keep the shape; they need (C, *spatial) per sample,
    else torch would read the batch as the channels."""
    x = tensor(inputs[0])
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    return Out(x, args)


@rule("PReLU")
def prelu(args: Args, inputs: list[Value]) -> Out:
    """One slope, or one per channel (dimension 1, the first of a sample)."""
    x = tensor(inputs[0])
    n = args["num_parameters"]
    if n != 1 and (not x.shape or x.shape[0] != n):
        raise ShapeMismatch(
            f"num_parameters {n} must be 1 or the number of channels of {x}", arg="num_parameters"
        )
    return Out(x, args, prod(x.shape))


@rule("Softmax", "LogSoftmax", "Softmin")
def softmax(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape. ``dim`` counts the batch as 0 (and may be 0, as in torch);
    ``dim: null`` is torch's legacy implicit choice (dim 1 for 2-D and 4-D tensors)."""
    x = tensor(inputs[0])
    if args.get("dim") is not None:
        _dim(args["dim"], x, batch=True)
    return Out(x, args)


@rule("GLU")
def glu(args: Args, inputs: list[Value]) -> Out:
    """Halves ``dim``, which must have an even size."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    if x.shape[d] % 2:
        raise ShapeMismatch(f"GLU halves dim {args['dim']}, which has odd size in {x}", arg="dim")
    shape = list(x.shape)
    shape[d] //= 2
    return Out(T(tuple(shape), x.dtype), args, prod(shape))


@rule("ChannelShuffle")
def channel_shuffle(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``groups`` must divide the channels."""
    x = tensor(inputs[0])
    _min_rank(x, 2, "ChannelShuffle", "C, *")
    if args["groups"] < 1 or x.shape[0] % args["groups"]:
        raise ShapeMismatch(
            f"groups {args['groups']} does not divide the channels of {x}", "groups"
        )
    return Out(x, args)


# -- linear --------------------------------------------------------------------


@rule("Linear", infers=("in_features",))
def linear(args: Args, inputs: list[Value]) -> Out:
    """Maps the last dimension to ``out_features``."""
    x = _float(inputs[0], "Linear")
    _min_rank(x, 1, "Linear", "..., in_features")
    _infer(args, "in_features", x.shape[-1], x)
    out = args["out_features"]
    return Out(T((*x.shape[:-1], out), x.dtype), args, prod(x.shape) * out)


@rule("Bilinear", infers=("in1_features", "in2_features"), inputs=(2, 2))
def bilinear(args: Args, inputs: list[Value]) -> Out:
    """``x1^T A x2 + b`` over the last dimensions; the others must be equal."""
    x1, x2 = _float(inputs[0], "Bilinear"), _float(inputs[1], "Bilinear")
    _min_rank(x1, 1, "Bilinear", "..., in1_features")
    _min_rank(x2, 1, "Bilinear", "..., in2_features")
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeMismatch(f"Bilinear inputs differ but in their last dimension: {x1} and {x2}")
    _infer(args, "in1_features", x1.shape[-1], x1)
    _infer(args, "in2_features", x2.shape[-1], x2)
    out = args["out_features"]
    macs = prod(x1.shape) * x2.shape[-1] * out
    return Out(T((*x1.shape[:-1], out), x1.dtype), args, macs)


# -- convolution ---------------------------------------------------------------

_N = {1: "1d", 2: "2d", 3: "3d"}


def _groups(args: Args, c: int, x: T) -> int:
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


@family({f"Conv{v}": n for n, v in _N.items()}, infers=("in_channels",))
def conv(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """torch's convolution arithmetic; ``padding: same`` keeps the size."""
    x = _float(inputs[0], name)
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    c, size = x.shape[0], x.shape[1:]
    _infer(args, "in_channels", c, x)
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
    return Out(T((args["out_channels"], *out), x.dtype), args, macs)


@family({f"ConvTranspose{v}": n for n, v in _N.items()}, infers=("in_channels",))
def conv_transpose(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``."""
    x = _float(inputs[0], name)
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    c, size = x.shape[0], x.shape[1:]
    _infer(args, "in_channels", c, x)
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
    return Out(T((args["out_channels"], *out), x.dtype), args, macs)


# -- pooling -------------------------------------------------------------------


def _pool_padding(args: Args, n: int, k: Sequence[int]) -> tuple[int, ...]:
    p = _ints(args, "padding", n) if "padding" in args else (0,) * n
    if any(2 * pi > ki for pi, ki in zip(p, k, strict=True)):
        raise ShapeMismatch(
            f"padding {_one(p)} must be at most half of kernel_size {_one(k)}", arg="padding"
        )
    return p


def _with_indices(args: Args, out: T) -> Value:
    return (out, T(out.shape, "int64")) if args.get("return_indices") else out


@family({f"{kind}Pool{v}": n for kind in ("Max", "Avg", "LP") for n, v in _N.items()})
def pool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """Max, average and power-average pooling (torch's ``pooling_output_shape``).

    ``return_indices`` makes the output ``(output, indices)``, the indices int64.
    """
    x = tensor(inputs[0])
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
    y = T((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(y.shape) * prod(k))


@family({"FractionalMaxPool2d": 2, "FractionalMaxPool3d": 3})
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
    y = T((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(y.shape) * prod(k))


@family({f"Adaptive{kind}Pool{v}": n for kind in ("Max", "Avg") for n, v in _N.items()})
def adaptive_pool(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """The output size is ``output_size``; in 2-D and 3-D a ``null`` entry keeps that
    input size."""
    x = tensor(inputs[0])
    _spatial(x, n, name)
    size = x.shape[-n:]
    want = args.get("output_size")
    sizes = ntuple(want, n) if want is not None else (None,) * n
    if len(sizes) != n or (n == 1 and None in sizes):
        raise ShapeMismatch(
            f"output_size {want} must be {n} sizes"
            + (" (null only in 2-D and 3-D)" if n == 1 else ""),
            arg="output_size",
        )
    out = tuple(i if o is None else o for o, i in zip(sizes, size, strict=True))
    if any(o < 1 for o in out):
        raise ShapeMismatch(f"output_size {want} has an empty dimension", arg="output_size")
    y = T((*x.shape[:-n], *out), x.dtype)
    return Out(_with_indices(args, y), args, prod(x.shape))


@family({f"MaxUnpool{v}": n for n, v in _N.items()}, inputs=(2, 2))
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
    return Out(T((*x.shape[:-n], *out), x.dtype), args)


# -- normalization -------------------------------------------------------------

_NORMS: dict[str, tuple[tuple[int, ...], str]] = {
    "BatchNorm1d": ((1, 2), "C or C, L"),
    "BatchNorm2d": ((3,), _LAYOUT[2]),
    "BatchNorm3d": ((4,), _LAYOUT[3]),
    "InstanceNorm1d": ((2,), _LAYOUT[1]),
    "InstanceNorm2d": ((3,), _LAYOUT[2]),
    "InstanceNorm3d": ((4,), _LAYOUT[3]),
}


@family(_NORMS, infers=("num_features",))
def batch_norm(
    name: str, ranks: tuple[tuple[int, ...], str], args: Args, inputs: list[Value]
) -> Out:
    """Keeps the shape; ``num_features`` is the channel dimension."""
    x = _float(inputs[0], name)
    need_rank(x, ranks[0], name, ranks[1])
    _infer(args, "num_features", x.shape[0], x)
    return Out(x, args, prod(x.shape))


@rule("SyncBatchNorm", infers=("num_features",))
def sync_batch_norm(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``num_features`` is the channel dimension (any rank)."""
    x = _float(inputs[0], "SyncBatchNorm")
    _min_rank(x, 1, "SyncBatchNorm", "C, *")
    _infer(args, "num_features", x.shape[0], x)
    return Out(x, args, prod(x.shape))


@rule("GroupNorm", infers=("num_channels",))
def group_norm(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``num_groups`` must divide the channels."""
    x = _float(inputs[0], "GroupNorm")
    _min_rank(x, 1, "GroupNorm", "C, *")
    _infer(args, "num_channels", x.shape[0], x)
    if args["num_groups"] < 1 or x.shape[0] % args["num_groups"]:
        g = args["num_groups"]
        raise ShapeMismatch(f"num_groups {g} does not divide the channels of {x}", "num_groups")
    return Out(x, args, prod(x.shape))


@family(dict.fromkeys(("LayerNorm", "RMSNorm")), infers=("normalized_shape",))
def layer_norm(name: str, _: None, args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape. Inferred ``normalized_shape`` is the last dimension ``[C]``;
    a given one must equal the trailing dimensions."""
    x = _float(inputs[0], name)
    _min_rank(x, 1, name, "..., C")
    given = args.get("normalized_shape")
    if given is None:
        args["normalized_shape"] = [x.shape[-1]]
    else:
        want = list(ntuple(given, 1))
        if len(want) > len(x.shape) or list(x.shape[len(x.shape) - len(want) :]) != want:
            raise ShapeMismatch(
                f"normalized_shape {given} does not match the trailing dimensions of {x}",
                arg="normalized_shape",
            )
    return Out(x, args, prod(x.shape))


@family({"LocalResponseNorm": False, "CrossMapLRN2d": True})
def local_response_norm(name: str, only_2d: bool, args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; normalizes across channels (dimension 1). CrossMapLRN2d
    needs (C, H, W)."""
    x = tensor(inputs[0])
    if only_2d:
        need_rank(x, (3,), name, _LAYOUT[2])
    _min_rank(x, 2, name, "C, *")
    return Out(x, args, prod(x.shape) * args["size"])


# -- padding -------------------------------------------------------------------

_PADS = {
    f"{mode}Pad{v}": (n, mode)
    for mode in ("Constant", "Zero", "Reflection", "Replication", "Circular")
    for n, v in _N.items()
}


@family(_PADS)
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
    return Out(T(_positive(x, shape, "padding", "the padded shape"), x.dtype), args)


# -- resampling ----------------------------------------------------------------

_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _resize(x: T, args: Args, layer: str, n: int) -> T:
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
        out = tuple(int(i * f) for i, f in zip(x.shape[1:], factors, strict=True))
    return T((x.shape[0], *_positive(x, out, "scale_factor", "the output size")), x.dtype)


@rule("Upsample")
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
    y = _resize(x, args, "Upsample", n)
    return Out(y, args, prod(y.shape))


@family(dict.fromkeys(("UpsamplingBilinear2d", "UpsamplingNearest2d")))
def upsampling_2d(name: str, _: None, args: Args, inputs: list[Value]) -> Out:
    """Resizes H and W of (C, H, W)."""
    x = tensor(inputs[0])
    need_rank(x, (3,), name, _LAYOUT[2])
    y = _resize(x, args, name, 2)
    return Out(y, args, prod(y.shape))


@rule("PixelShuffle")
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
    return Out(T((*lead, c // (r * r), h * r, w * r), x.dtype), args)


@rule("PixelUnshuffle")
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
    return Out(T((*lead, c * r * r, h // r, w // r), x.dtype), args)


@rule("Fold")
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
    want = _slide(T(size), size, k, s, p, d)
    if prod(want) != blocks:
        raise ShapeMismatch(
            f"output_size {_dims(size)} holds {_dims(want)} = {prod(want)} blocks, "
            f"the input {x} has {blocks}",
            arg="output_size",
        )
    return Out(T((ck // prod(k), *size), x.dtype), args, prod(x.shape))


@rule("Unfold")
def unfold(args: Args, inputs: list[Value]) -> Out:
    """(C, H, W) -> (C * prod(kernel_size), blocks)."""
    x = tensor(inputs[0])
    need_rank(x, (3,), "Unfold", _LAYOUT[2])
    k, s = _ints(args, "kernel_size", 2, 1), _ints(args, "stride", 2, 1)
    p, d = _ints(args, "padding", 2), _ints(args, "dilation", 2, 1)
    blocks = _slide(x, x.shape[1:], k, s, p, d)
    return Out(T((x.shape[0] * prod(k), prod(blocks)), x.dtype), args)


# -- reshaping -----------------------------------------------------------------


@rule("Flatten")
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
    return Out(T(shape, x.dtype), args)


def _fill(shape: Sequence[int], total: int, x: T, arg: str, what: str) -> tuple[int, ...]:
    """``shape`` with its -1 (at most one) filled in so it holds ``total`` values."""
    if list(shape).count(-1) > 1 or any(v < 1 and v != -1 for v in shape):
        raise ShapeMismatch(f"{what} {list(shape)} may have one -1, other sizes must be > 0", arg)
    known = prod([v for v in shape if v != -1])
    if (total % known) if -1 in shape else (total != known):
        raise ShapeMismatch(f"{what} {list(shape)} does not fit {x} ({total} values)", arg=arg)
    return tuple(total // known if v == -1 else v for v in shape)


@rule("Unflatten")
def unflatten(args: Args, inputs: list[Value]) -> Out:
    """Splits ``dim`` (not the batch, 0) into ``unflattened_size`` (one entry may be -1)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    what = f"Unflatten of dim {args['dim']} to"
    sizes = _fill(args["unflattened_size"], x.shape[d], x, "unflattened_size", what)
    return Out(T((*x.shape[:d], *sizes, *x.shape[d + 1 :]), x.dtype), args)


@rule("Reshape")
def reshape(args: Args, inputs: list[Value]) -> Out:
    """Each sample becomes ``shape`` (one entry may be -1)."""
    x = tensor(inputs[0])
    return Out(T(_fill(args["shape"], prod(x.shape), x, "shape", "Reshape to"), x.dtype), args)


@rule("Permute")
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
    return Out(T(tuple(x.shape[d % full - 1] for d in dims[1:]), x.dtype), args)


@rule("Transpose")
def transpose(args: Args, inputs: list[Value]) -> Out:
    """Swaps two dimensions, neither of them the batch (0)."""
    x = tensor(inputs[0])
    a, b = _dim(args["dim0"], x, "dim0"), _dim(args["dim1"], x, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return Out(T(tuple(shape), x.dtype), args)


@rule("Index")
def index(args: Args, inputs: list[Value]) -> Out:
    """``x.select(dim, index)``: removes ``dim`` (not the batch, 0)."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    i, size = args["index"], x.shape[d]
    if not -size <= i < size:
        raise ShapeMismatch(
            f"index {i} is out of range for dim {args['dim']} of {x} (size {size})", arg="index"
        )
    return Out(T(x.shape[:d] + x.shape[d + 1 :], x.dtype), args)


@rule("Select")
def select(args: Args, inputs: list[Value]) -> Out:
    """Element ``index`` of a tuple value, e.g. ``output`` of an LSTM's ``(output, (h, c))``."""
    v, i = inputs[0], args["index"]
    if isinstance(v, T):
        raise ShapeMismatch(f"Select picks from a tuple, but its input is the tensor {v}")
    if not -len(v) <= i < len(v):
        raise ShapeMismatch(f"index {i} is out of range for {show(v)} ({len(v)} elements)", "index")
    return Out(v[i], args)


# -- combining -----------------------------------------------------------------


def _tensors(inputs: list[Value]) -> list[T]:
    return [tensor(v, f"input {i + 1}") for i, v in enumerate(inputs)]


@rule("Add", inputs=(2, MAX_INPUTS))
def add(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs (same number of dimensions, each equal or 1)."""
    xs = _tensors(inputs)
    shape = _broadcast("Add", xs)
    return Out(T(shape, _promote(xs)), args)


@rule("Mul", inputs=(2, MAX_INPUTS))
def mul(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts its inputs (same number of dimensions, each equal or 1)."""
    xs = _tensors(inputs)
    shape = _broadcast("Mul", xs)
    return Out(T(shape, _promote(xs)), args, prod(shape) * (len(xs) - 1))


@rule("Concat", inputs=(2, MAX_INPUTS))
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
    return Out(T(tuple(shape), _promote(xs)), args)


@rule("Mean")
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
    return Out(T(shape, x.dtype), args, prod(x.shape))


@rule("CosineSimilarity", inputs=(2, 2))
def cosine_similarity(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts the inputs and removes ``dim`` (not the batch, 0)."""
    xs = _tensors(inputs)
    shape = _broadcast("CosineSimilarity", xs)
    d = _dim(args["dim"], T(shape))
    return Out(T(shape[:d] + shape[d + 1 :], _promote(xs)), args, 3 * prod(shape))


@rule("PairwiseDistance", inputs=(2, 2))
def pairwise_distance(args: Args, inputs: list[Value]) -> Out:
    """Broadcasts the inputs and takes the norm over the last dimension."""
    xs = _tensors(inputs)
    shape = _broadcast("PairwiseDistance", xs)
    _min_rank(T(shape), 1, "PairwiseDistance", "..., D")
    out = shape[:-1] + ((1,) if args["keepdim"] else ())
    return Out(T(out, _promote(xs)), args, prod(shape))


# -- embeddings ----------------------------------------------------------------


def _indices(v: Value, layer: str) -> T:
    x = tensor(v)
    if x.dtype not in _INTS:
        raise ShapeMismatch(f"{layer} expects integer indices (int64), got {x}")
    return x


@rule("Embedding")
def embedding(args: Args, inputs: list[Value]) -> Out:
    """Integer indices (any shape) -> float32 vectors: adds ``embedding_dim``."""
    x = _indices(inputs[0], "Embedding")
    return Out(T((*x.shape, args["embedding_dim"]), "float32"), args)


@rule("EmbeddingBag")
def embedding_bag(args: Args, inputs: list[Value]) -> Out:
    """One bag of indices per sample, (bag,) -> (embedding_dim,).

    Bags of varying length (a flat index tensor with ``offsets``) and
    ``per_sample_weights`` need a second input and are not described: one
    sample's bag cannot be told from its shape.
    """
    x = _indices(inputs[0], "EmbeddingBag")
    need_rank(x, (1,), "EmbeddingBag", "bag")
    return Out(T((args["embedding_dim"],), "float32"), args, prod(x.shape) * args["embedding_dim"])


# -- recurrent -----------------------------------------------------------------


def _batch_first(args: Args) -> None:
    if not args.get("batch_first"):
        raise ShapeMismatch(
            "specnet puts the batch first: set batch_first: true", arg="batch_first"
        )


_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


@family(_GATES, infers=("input_size",))
def recurrent(name: str, gates: int, args: Args, inputs: list[Value]) -> Out:
    """(L, input_size) -> (output (L, D * H_out), h_n), LSTM ``(output, (h_n, c_n))``.

    ``D`` is 2 when bidirectional, ``H_out`` is ``proj_size`` when set, else
    ``hidden_size``. Per sample h_n is (D * num_layers, H_out) and c_n
    (D * num_layers, hidden_size); in the real tensors the batch is dimension 1.
    """
    _batch_first(args)
    x = _float(inputs[0], name)
    need_rank(x, (2,), name, "L, input_size")
    _infer(args, "input_size", x.shape[1], x)
    hidden, layers = args["hidden_size"], args["num_layers"]
    proj = args.get("proj_size") or 0
    if proj >= hidden:
        raise ShapeMismatch(
            f"proj_size {proj} must be smaller than hidden_size {hidden}", "proj_size"
        )
    h_out, d = proj or hidden, 2 if args["bidirectional"] else 1
    length = x.shape[0]
    step = 0
    for layer in range(layers):
        width = x.shape[1] if layer == 0 else d * h_out
        step += d * (gates * hidden * (width + h_out) + hidden * proj)
    out = T((length, d * h_out), x.dtype)
    h = T((d * layers, h_out), x.dtype)
    value: Value = (out, (h, T((d * layers, hidden), x.dtype))) if name == "LSTM" else (out, h)
    return Out(value, args, length * step)


@family({f"{k}Cell": g for k, g in _GATES.items()}, infers=("input_size",))
def recurrent_cell(name: str, gates: int, args: Args, inputs: list[Value]) -> Out:
    """One step, (input_size,) -> (hidden_size,); LSTMCell -> (h, c)."""
    x = _float(inputs[0], name)
    need_rank(x, (1,), name, "input_size")
    _infer(args, "input_size", x.shape[0], x)
    hidden = args["hidden_size"]
    h = T((hidden,), x.dtype)
    macs = gates * hidden * (x.shape[0] + hidden)
    return Out((h, h) if name == "LSTMCell" else h, args, macs)


# -- attention -----------------------------------------------------------------


def _heads(args: Args, e: int, arg: str) -> None:
    heads = args[arg]
    if heads < 1 or e % heads:
        raise ShapeMismatch(f"{arg} {heads} does not divide the embedding size {e}", arg=arg)


def _sequence(v: Value, layer: str, what: str) -> T:
    x = _float(v, layer)
    need_rank(x, (2,), f"{layer} {what}", "L, E")
    return x


@rule("MultiheadAttention", infers=("embed_dim",), inputs=(1, 3))
def multihead_attention(args: Args, inputs: list[Value]) -> Out:
    """(query, key, value) -> (output (L, E), weights (L, S)), weights averaged over heads.

    One input is self-attention (query = key = value); two are (query, key)
    with value = key. ``add_bias_kv`` and ``add_zero_attn`` each add one key.
    """
    _batch_first(args)
    q = _sequence(inputs[0], "MultiheadAttention", "query")
    k = _sequence(inputs[1], "MultiheadAttention", "key") if len(inputs) > 1 else q
    v = _sequence(inputs[2], "MultiheadAttention", "value") if len(inputs) > 2 else k
    _infer(args, "embed_dim", q.shape[1], q)
    e = q.shape[1]
    _heads(args, e, "num_heads")
    for x, arg, what in ((k, "kdim", "key"), (v, "vdim", "value")):
        want = args.get(arg) or e
        if x.shape[1] != want:
            raise ShapeMismatch(
                f"{what} {x} has {x.shape[1]} features, {arg} is {args.get(arg)} "
                f"(embed_dim {e} when null)",
                arg=arg,
            )
    if k.shape[0] != v.shape[0]:
        raise ShapeMismatch(f"key {k} and value {v} differ in length")
    length, keys = q.shape[0], k.shape[0] + bool(args["add_bias_kv"]) + bool(args["add_zero_attn"])
    macs = e * (2 * length * e + k.shape[0] * (k.shape[1] + v.shape[1]) + 2 * length * keys)
    return Out((T((length, e), q.dtype), T((length, keys), q.dtype)), args, macs)


def _encoder_macs(length: int, e: int, ff: int) -> int:
    return 4 * length * e * e + 2 * length * length * e + 2 * length * e * ff


def _decoder_macs(length: int, memory: int, e: int, ff: int) -> int:
    cross = 2 * length * e * e + 2 * memory * e * e + 2 * length * memory * e
    return _encoder_macs(length, e, ff) + cross


def _features(x: T, e: int, what: str) -> None:
    if x.shape[1] != e:
        raise ShapeMismatch(f"{what} {x} has {x.shape[1]} features, d_model is {e}", arg="d_model")


@rule("TransformerEncoderLayer", infers=("d_model",))
def transformer_encoder_layer(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model)."""
    _batch_first(args)
    x = _sequence(inputs[0], "TransformerEncoderLayer", "src")
    _infer(args, "d_model", x.shape[1], x)
    _heads(args, x.shape[1], "nhead")
    return Out(x, args, _encoder_macs(x.shape[0], x.shape[1], args["dim_feedforward"]))


@rule("TransformerDecoderLayer", infers=("d_model",), inputs=(2, 2))
def transformer_decoder_layer(args: Args, inputs: list[Value]) -> Out:
    """(tgt (T, d_model), memory (S, d_model)) -> (T, d_model)."""
    _batch_first(args)
    tgt = _sequence(inputs[0], "TransformerDecoderLayer", "tgt")
    memory = _sequence(inputs[1], "TransformerDecoderLayer", "memory")
    _infer(args, "d_model", tgt.shape[1], tgt)
    _features(memory, tgt.shape[1], "memory")
    _heads(args, tgt.shape[1], "nhead")
    macs = _decoder_macs(tgt.shape[0], memory.shape[0], tgt.shape[1], args["dim_feedforward"])
    return Out(tgt, args, macs)


@rule("Transformer", infers=("d_model",), inputs=(2, 2))
def transformer(args: Args, inputs: list[Value]) -> Out:
    """(src (S, d_model), tgt (T, d_model)) -> (T, d_model).

    A ``custom_encoder``/``custom_decoder`` is taken to keep the shape, as torch
    requires; the MACs count the standard layers.
    """
    _batch_first(args)
    src = _sequence(inputs[0], "Transformer", "src")
    tgt = _sequence(inputs[1], "Transformer", "tgt")
    _infer(args, "d_model", src.shape[1], src)
    _features(tgt, src.shape[1], "tgt")
    _heads(args, src.shape[1], "nhead")
    e, ff, s, t = src.shape[1], args["dim_feedforward"], src.shape[0], tgt.shape[0]
    macs = args["num_encoder_layers"] * _encoder_macs(s, e, ff)
    macs += args["num_decoder_layers"] * _decoder_macs(t, s, e, ff)
    return Out(tgt, args, macs)


class Described(Protocol):
    """A nested node argument as the compiler passes it: the ``Out`` of its rule,
    or anything else with the (constructor) ``args`` and ``macs`` it found."""

    @property
    def args(self) -> Mapping[str, Any]: ...

    @property
    def macs(self) -> int: ...


def _node(args: Args, name: str) -> Described | None:
    node = args.get(name)
    if node is None:
        return None
    if not (isinstance(getattr(node, "args", None), Mapping) and hasattr(node, "macs")):
        raise TypeError(f"{name} must be given as the Out of its shape rule, got {node!r}")
    described: Described = node
    return described


def _stack(args: Args, layer_arg: str, x: T, layer: str) -> Out:
    """A stack of ``num_layers`` copies of ``args[layer_arg]``, then ``norm``.

    The nested layers were described by their own rules on the same input(s),
    so only the stack's own input is checked here, against their ``d_model``.
    """
    inner = _node(args, layer_arg)
    if inner is None:
        raise ShapeMismatch(f"{layer} needs {layer_arg}", arg=layer_arg)
    e = inner.args.get("d_model")
    if e is not None and x.shape[1] != e:
        raise ShapeMismatch(
            f"{layer} input {x} has {x.shape[1]} features, {layer_arg} has d_model {e}", layer_arg
        )
    norm = _node(args, "norm")
    macs = args["num_layers"] * inner.macs + (norm.macs if norm else 0)
    return Out(x, args, macs)


@rule("TransformerEncoder")
def transformer_encoder(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model). ``encoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same input."""
    x = _sequence(inputs[0], "TransformerEncoder", "src")
    return _stack(args, "encoder_layer", x, "TransformerEncoder")


@rule("TransformerDecoder", inputs=(2, 2))
def transformer_decoder(args: Args, inputs: list[Value]) -> Out:
    """(tgt, memory) -> tgt's shape. ``decoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same inputs."""
    x = _sequence(inputs[0], "TransformerDecoder", "tgt")
    _sequence(inputs[1], "TransformerDecoder", "memory")
    return _stack(args, "decoder_layer", x, "TransformerDecoder")
