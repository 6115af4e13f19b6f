"""Linear layers."""

from __future__ import annotations

from .base import (
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _fill,
    _float,
    _min_rank,
    prod,
)

rules = RuleSet()


@rules.rule("Linear", infers=("in_features",), fresh=True, unbatched=True)
def linear(args: Args, inputs: list[Value]) -> Out:
    """Maps the last dimension to ``out_features`` (the others alike, with or without a
    batch)."""
    x = _float(inputs[0], "Linear")
    _min_rank(x, 1, "Linear", "..., in_features")
    _fill(args, "in_features", x.shape[-1], x)
    out = args["out_features"]
    y = TensorType((*x.shape[:-1], out), x.dtype, x.batched)
    return Out(y, args, prod(x.shape) * out)


@rules.rule("Bilinear", infers=("in1_features", "in2_features"), inputs=(2, 2))
def bilinear(args: Args, inputs: list[Value]) -> Out:
    """``x1^T A x2 + b`` over the last dimensions; the others must be equal."""
    x1, x2 = _float(inputs[0], "Bilinear"), _float(inputs[1], "Bilinear")
    _min_rank(x1, 1, "Bilinear", "..., in1_features")
    _min_rank(x2, 1, "Bilinear", "..., in2_features")
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeMismatch(f"Bilinear inputs differ but in their last dimension: {x1} and {x2}")
    _fill(args, "in1_features", x1.shape[-1], x1)
    _fill(args, "in2_features", x2.shape[-1], x2)
    out = args["out_features"]
    macs = prod(x1.shape) * x2.shape[-1] * out
    return Out(TensorType((*x1.shape[:-1], out), x1.dtype), args, macs)
