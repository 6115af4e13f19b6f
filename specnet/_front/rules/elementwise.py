"""Elementwise and per-channel layers: activations, dropout, softmax."""

from __future__ import annotations

from .base import (
    _LAYOUT,
    NONNEGATIVE,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _dim,
    _min_rank,
    need_rank,
    prod,
    tensor,
)

rules = RuleSet(stateless=True)

ELEMENTWISE = (
    *("AlphaDropout", "Dropout", "Identity", "Scale"),
    *("GELU", "Hardshrink", "Hardsigmoid", "Hardswish"),
    *("LogSigmoid", "Mish", "ReLU", "ReLU6", "SELU", "SiLU"),
    *("Sigmoid", "Softplus", "Softsign", "Tanh", "Tanhshrink", "Threshold"),
)
"""Layers acting on each element alike, so a tensor without a batch dimension is fine (and
CELU, ELU, LeakyReLU, RReLU and Softshrink, whose arguments torch checks only in ``forward`` or
``backward``: below)."""


@rules.rule(*ELEMENTWISE, unbatched=True)
@rules.rule("Softshrink", unbatched=True, ranges={"lambd": NONNEGATIVE})
def elementwise(args: Args, inputs: list[Value]) -> Out:
    """Elementwise layers keep the shape (Dropout in eval mode is the identity)."""
    return Out(tensor(inputs[0]), args)


@rules.family({"CELU": "alpha", "ELU": "alpha", "LeakyReLU": "negative_slope"}, unbatched=True)
def sloped(name: str, slope: str, args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape. torch's backward of these in place cannot undo a negative ``slope``
    argument, and CELU divides by its ``alpha``, which torch refuses to be 0."""
    if name == "CELU" and args["alpha"] == 0:
        raise ShapeMismatch("alpha must not be 0 (CELU divides by it)", arg="alpha")
    if args["inplace"] and args[slope] < 0:
        raise ShapeMismatch(
            f"inplace: true with a negative {slope} ({args[slope]}): torch's backward cannot "
            "recover the input from the output in place (set inplace: false)",
            arg="inplace",
        )
    return Out(tensor(inputs[0]), args)


@rules.rule("RReLU", unbatched=True)
def rrelu(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; in training the slopes are drawn from ``[lower, upper]``, which torch
    requires to be an interval (``lower <= upper``)."""
    if args["lower"] > args["upper"]:
        raise ShapeMismatch(
            f"lower ({args['lower']}) must not be greater than upper ({args['upper']})",
            arg="lower",
        )
    return Out(tensor(inputs[0]), args)


@rules.rule("FeatureAlphaDropout", "StochasticDepth")
def per_sample(args: Args, inputs: list[Value]) -> Out:
    """Keep the shape; in training they drop whole channels or samples, so they need the
    batch (StochasticDepth: torchvision's ``ops.StochasticDepth``, by ``mode`` a random
    sample of the batch or the whole batch)."""
    return Out(tensor(inputs[0]), args)


@rules.family({"Dropout1d": 1, "Dropout2d": 2, "Dropout3d": 3, "Softmax2d": 2})
def channelwise(name: str, n: int, args: Args, inputs: list[Value]) -> Out:
    """Layers acting per channel keep the shape; they need (C, *spatial) per sample,
    else torch would read the batch as the channels."""
    x = tensor(inputs[0])
    need_rank(x, (n + 1,), name, _LAYOUT[n])
    return Out(x, args)


@rules.rule("PReLU", stateless=False)
def prelu(args: Args, inputs: list[Value]) -> Out:
    """One slope, or one per channel (dimension 1, the first of a sample)."""
    x = tensor(inputs[0])
    n = args["num_parameters"]
    if n != 1 and (not x.shape or x.shape[0] != n):
        raise ShapeMismatch(
            f"num_parameters {n} must be 1 or the number of channels of {x}", arg="num_parameters"
        )
    return Out(x, args, prod(x.shape))


@rules.rule("Softmax", "LogSoftmax", "Softmin")
def softmax(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape. ``dim`` counts the batch as 0 (and may be 0, as in torch);
    ``dim: null`` is torch's legacy implicit choice (dim 1 for 2-D and 4-D tensors)."""
    x = tensor(inputs[0])
    if args.get("dim") is not None:
        _dim(args["dim"], x, batch=True)
    return Out(x, args)


@rules.rule("GLU")
def glu(args: Args, inputs: list[Value]) -> Out:
    """Halves ``dim``, which must have an even size."""
    x = tensor(inputs[0])
    d = _dim(args["dim"], x)
    if x.shape[d] % 2:
        raise ShapeMismatch(f"GLU halves dim {args['dim']}, which has odd size in {x}", arg="dim")
    shape = list(x.shape)
    shape[d] //= 2
    return Out(TensorType(tuple(shape), x.dtype), args, prod(shape))


@rules.rule("ChannelShuffle")
def channel_shuffle(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``groups`` must divide the channels."""
    x = tensor(inputs[0])
    _min_rank(x, 2, "ChannelShuffle", "C, *")
    if args["groups"] < 1 or x.shape[0] % args["groups"]:
        raise ShapeMismatch(
            f"groups {args['groups']} does not divide the channels of {x}", "groups"
        )
    return Out(x, args)


@rules.rule("Hardtanh")
def hardtanh(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; torch requires ``max_val > min_val``."""
    if not args["max_val"] > args["min_val"]:
        raise ShapeMismatch(
            f"max_val ({args['max_val']}) must be greater than min_val ({args['min_val']})",
            arg="max_val",
        )
    return Out(tensor(inputs[0]), args)
