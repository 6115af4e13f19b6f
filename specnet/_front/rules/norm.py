"""Normalization layers."""

from __future__ import annotations

from .base import (
    _LAYOUT,
    POSITIVE,
    SIZE,
    Args,
    Out,
    Range,
    RuleSet,
    ShapeMismatch,
    Value,
    _fill,
    _float,
    _min_rank,
    need_rank,
    ntuple,
    prod,
    tensor,
)

rules = RuleSet()

_BATCH_NORMS: dict[str, tuple[tuple[int, ...], str]] = {
    "BatchNorm1d": ((1, 2), "C or C, L"),
    "BatchNorm2d": ((3,), _LAYOUT[2]),
    "BatchNorm3d": ((4,), _LAYOUT[3]),
}
_INSTANCE_NORMS: dict[str, tuple[tuple[int, ...], str]] = {
    "InstanceNorm1d": ((2,), _LAYOUT[1]),
    "InstanceNorm2d": ((3,), _LAYOUT[2]),
    "InstanceNorm3d": ((4,), _LAYOUT[3]),
}


_BATCH_EPS = {"eps": POSITIVE}
"""torch's batch norms refuse an ``eps`` that is not positive in training (in ``forward``)."""


@rules.family(_INSTANCE_NORMS, infers=("num_features",))
@rules.family(_BATCH_NORMS, infers=("num_features",), fresh=True, ranges=_BATCH_EPS)
def batch_norm(
    name: str, ranks: tuple[tuple[int, ...], str], args: Args, inputs: list[Value]
) -> Out:
    """Keeps the shape; ``num_features`` is the channel dimension. A batch norm's running
    statistics are float32 too; an instance norm's are not mixed with its input."""
    stats = name.startswith("Batch") and args["track_running_stats"]
    x = _float(inputs[0], name, mixed=True, holds=args["affine"] or stats)
    need_rank(x, ranks[0], name, ranks[1])
    _fill(args, "num_features", x.shape[0], x)
    return Out(x, args, prod(x.shape))


@rules.rule("SyncBatchNorm", infers=("num_features",), ranges=_BATCH_EPS)
def sync_batch_norm(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``num_features`` is the channel dimension (any rank)."""
    holds = args["affine"] or args["track_running_stats"]
    x = _float(inputs[0], "SyncBatchNorm", mixed=True, holds=holds)
    _min_rank(x, 1, "SyncBatchNorm", "C, *")
    _fill(args, "num_features", x.shape[0], x)
    return Out(x, args, prod(x.shape))


@rules.rule("GroupNorm", infers=("num_channels",))
def group_norm(args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; ``num_groups`` must divide the channels."""
    x = _float(inputs[0], "GroupNorm", mixed=True, holds=args["affine"])
    _min_rank(x, 1, "GroupNorm", "C, *")
    _fill(args, "num_channels", x.shape[0], x)
    if args["num_groups"] < 1 or x.shape[0] % args["num_groups"]:
        g = args["num_groups"]
        raise ShapeMismatch(f"num_groups {g} does not divide the channels of {x}", "num_groups")
    return Out(x, args, prod(x.shape))


@rules.family(dict.fromkeys(("LayerNorm", "RMSNorm")), infers=("normalized_shape",), unbatched=True)
def layer_norm(name: str, _: None, args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape. Inferred ``normalized_shape`` is the last dimension ``[C]``;
    a given one must equal the trailing dimensions. RMSNorm takes any floating-point input
    beside its weight (torch computes it apart when the dtypes differ)."""
    holds = name == "LayerNorm" and args["elementwise_affine"]
    x = _float(inputs[0], name, mixed=True, holds=holds)
    _min_rank(x, 1, name, "..., C")
    given = args.get("normalized_shape")
    if given is None:
        args["normalized_shape"] = [x.shape[-1]]
    else:
        want = list(ntuple(given, 1))
        if not want:
            raise ShapeMismatch(
                f"normalized_shape is empty: {name} normalizes over at least one dimension",
                arg="normalized_shape",
            )
        if len(want) > len(x.shape) or list(x.shape[len(x.shape) - len(want) :]) != want:
            raise ShapeMismatch(
                f"normalized_shape {given} does not match the trailing dimensions of {x}",
                arg="normalized_shape",
            )
    return Out(x, args, prod(x.shape))


@rules.family({"LocalResponseNorm": False}, stateless=True, ranges={"size": SIZE})
@rules.family({"CrossMapLRN2d": True}, stateless=True, ranges={"size": Range(2)})
def local_response_norm(name: str, only_2d: bool, args: Args, inputs: list[Value]) -> Out:
    """Keeps the shape; normalizes across channels (dimension 1). CrossMapLRN2d
    needs (C, H, W), and a window of at least 2 channels (its backward fails on 1)."""
    x = tensor(inputs[0])
    if only_2d:
        need_rank(x, (3,), name, _LAYOUT[2])
    _min_rank(x, 2, name, "C, *")
    return Out(x, args, prod(x.shape) * args["size"])
