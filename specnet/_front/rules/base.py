"""What shape rules are made of: the values they see, their answer, and their registration.

A rule describes how one family of layers turns its input values into its output value.
It receives the layer's arguments (as the spec gave them, torch's defaults filled in) and
the values flowing in, and returns the arguments with the inferred ones filled in, the
output value and the multiply-accumulates of one sample; it raises :class:`ShapeMismatch`
when the input does not fit. Besides the function, a rule's registration says which
arguments it infers, how many inputs the layer takes, the ranges torch enforces on its
arguments, and whether the layer holds no parameters. The registry joins that to the
catalog's description of each type's arguments: one :class:`~specnet._front.registry.TypeDef`
per type, read by every stage.

Conventions, since specnet's batch dimension is always first and implicit:

- shapes here never include the batch; arguments that name a dimension
  (``dim``, ``start_dim``, ``dims`` ...) count it as 0, like torch does on the
  real tensor, and a rule refuses those that would move or merge the batch;
- a layer whose torch input may be "batched or unbatched" gets exactly the
  per-sample rank that makes the real tensor batched, so torch never mistakes
  the batch for a channel dimension (pools and pads, which treat every channel
  alike, also take a sample without its channel dimension);
- a value may have no batch dimension (a learned tensor, a position range, a mask, a
  graph input declared ``batch: false``): its ``shape`` is then the whole tensor's.
  Only rules registered with ``unbatched=True`` see such values (the layers that treat
  every leading dimension alike, and the ops that combine them with batched ones);
- RNN/LSTM/GRU hidden states are described per sample as
  ``(num_layers * directions, hidden)``; in the real tensors torch puts the
  batch at dimension 1 there (``h_n`` is ``(D * num_layers, N, H)`` even with
  ``batch_first=True``).

Plain Python only: nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from ..limits import MAX_INPUTS, MAX_LAYERS
from ..types import Range, TypeSpec

__all__ = [
    "COMMON_RANGES",
    "MAX_INPUTS",
    "MAX_LAYERS",
    "Call",
    "Keyword",
    "Out",
    "Range",
    "Rule",
    "RuleFn",
    "RuleSet",
    "ShapeMismatch",
    "TensorType",
    "Value",
    "show",
]


@dataclass(frozen=True)
class TensorType:
    """A tensor flowing through the model: the shape of one sample and its dtype.

    A tensor without a batch dimension (``batched=False``) has its whole shape here.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    batched: bool = True

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        text = f"[{dims}]" if self.dtype.startswith("float") else f"[{dims}] {self.dtype}"
        return text if self.batched else f"{text} (no batch)"


Value = Union[TensorType, tuple["Value", ...]]  # noqa: UP007
"""A tensor, or a tuple of values (e.g. an LSTM's ``(output, (h, c))``); the empty tuple
stands for ``None`` (MultiheadAttention's weights with ``need_weights: false``)."""

NONE: Value = ()
"""The value of an output that is ``None``."""


def show(v: Value) -> str:
    if isinstance(v, TensorType):
        return str(v)
    if v == NONE:
        return "None"
    return "(" + ", ".join(show(x) for x in v) + ")"


class ShapeMismatch(Exception):
    """The input does not fit the layer. ``arg`` names the argument at fault, if one is."""

    def __init__(self, message: str, arg: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.arg = arg


@dataclass(frozen=True)
class Out:
    """A rule's answer."""

    value: Value
    args: Mapping[str, Any]
    """All arguments, the inferred ones filled in."""
    macs: int = 0
    """Multiply-accumulates for one sample."""


RuleFn = Callable[[dict[str, Any], list[Value]], Out]


@dataclass(frozen=True)
class Keyword:
    """A keyword argument of a layer's ``forward`` that a graph node's ``call:`` may give."""

    doc: str
    type: TypeSpec = "bool"
    """The type of a constant; ignored for a tensor."""
    default: Any = None
    tensor: bool = False
    """The value is a tensor: the name of a graph node (or ``null``)."""


CallCheck = Callable[[dict[str, Any], list[Value], dict[str, Any], Out], Out]
"""``(args, inputs, keywords, out) -> out``: checks the keyword arguments (every one, the
defaults filled in; a tensor's is its value, or ``None``) against the layer's arguments and
inputs, and returns the rule's answer, changed where a keyword changes the output. A
:class:`ShapeMismatch` names the keyword at fault as its ``arg``."""


@dataclass(frozen=True)
class Call:
    """The keyword arguments of a layer's ``forward`` that ``call:`` may give, and their check."""

    keywords: Mapping[str, Keyword]
    check: CallCheck


SIZE = Range(1)
"""A count of features, channels, heads, elements: at least 1."""
NONNEGATIVE = Range(0)
PROBABILITY = Range(0, 1)
"""A probability, as torch's dropout layers check it."""
POSITIVE = Range(0, low_open=True)

COMMON_RANGES: dict[str, Range] = {
    **dict.fromkeys(
        (
            *("in_features", "out_features", "in1_features", "in2_features"),
            *("in_channels", "out_channels", "num_features", "num_channels", "num_groups"),
            *("groups", "num_parameters", "embed_dim", "num_heads", "nhead", "d_model"),
            "dim_feedforward",
            *("input_size", "hidden_size", "num_embeddings", "embedding_dim"),
            *("upscale_factor", "downscale_factor", "kernel_size", "stride", "dilation"),
        ),
        SIZE,
    ),
    **dict.fromkeys(
        ("num_layers", "num_encoder_layers", "num_decoder_layers"), Range(1, MAX_LAYERS)
    ),
    **dict.fromkeys(("padding", "output_padding", "proj_size"), NONNEGATIVE),
    **dict.fromkeys(("p", "dropout"), PROBABILITY),
}
"""Arguments that mean the same thing in every torch.nn layer that has them, with the
range torch accepts. A family's own ``ranges`` take precedence."""


@dataclass(frozen=True)
class Rule:
    """Everything a layer type's shape behaviour needs, registered once per type."""

    fn: RuleFn
    infers: tuple[str, ...] = ()
    """Arguments the rule fills in when the spec leaves them out."""
    inputs: tuple[int, int | None] = (1, 1)
    """How many inputs the layer takes: (at least, at most or None for any)."""
    ranges: Mapping[str, Range] = field(default_factory=dict)
    """Ranges torch enforces, by argument: in its constructor, or only in ``forward`` or
    ``backward`` (checked by validation)."""
    stateless: bool = False
    """The layer holds no parameters (so it may serve as a ModuleList's ``between``)."""
    fresh: bool = False
    """Its output is a new tensor that its backward never reads, so the one operation that
    reads it next may write its result into it (``out += identity`` after a BatchNorm)."""
    unbatched: bool = False
    """The rule accepts values without a batch dimension (and gives its output none where
    torch does); for the others, shape inference refuses them before the rule runs."""
    call: Call | None = None
    """The ``forward`` keyword arguments a graph node's ``call:`` may give."""


Args = dict[str, Any]
P = TypeVar("P")
FamilyFn = Callable[[str, P, Args, list[Value]], Out]


class RuleSet:
    """The rules of one family of layers, registered by decorator; refuses duplicates.

    The registry reads each family's set explicitly (``specnet._front.rules.FAMILIES``):
    nothing is registered as a side effect of importing another module.
    """

    def __init__(self, *, stateless: bool = False) -> None:
        self.rules: dict[str, Rule] = {}
        self.stateless = stateless
        """Whether the family's layers hold no parameters (unless a rule says otherwise)."""

    def rule(
        self,
        *names: str,
        infers: tuple[str, ...] = (),
        inputs: tuple[int, int | None] = (1, 1),
        ranges: Mapping[str, Range] | None = None,
        stateless: bool | None = None,
        fresh: bool = False,
        unbatched: bool = False,
        call: Call | None = None,
    ) -> Callable[[RuleFn], RuleFn]:
        """Register ``fn`` as the shape rule of the layer types ``names``."""
        holds = self.stateless if stateless is None else stateless

        def add(fn: RuleFn) -> RuleFn:
            for name in names:
                rule = Rule(fn, infers, inputs, dict(ranges or {}), holds, fresh, unbatched, call)
                self._add(name, rule)
            return fn

        return add

    def family(
        self,
        table: Mapping[str, P],
        *,
        infers: tuple[str, ...] = (),
        inputs: tuple[int, int | None] = (1, 1),
        ranges: Mapping[str, Range] | None = None,
        stateless: bool | None = None,
        fresh: bool = False,
        unbatched: bool = False,
        call: Call | None = None,
    ) -> Callable[[FamilyFn[P]], FamilyFn[P]]:
        """Register ``fn(name, table[name], args, inputs)`` as the rule of each name in ``table``."""
        holds = self.stateless if stateless is None else stateless

        def add(fn: FamilyFn[P]) -> FamilyFn[P]:
            for name, param in table.items():
                bound = _bind(fn, name, param)
                ranged = dict(ranges or {})
                self._add(name, Rule(bound, infers, inputs, ranged, holds, fresh, unbatched, call))
            return fn

        return add

    def _add(self, name: str, rule: Rule) -> None:
        if name in self.rules:
            raise ValueError(f"shape rule for {name} registered twice")
        self.rules[name] = rule


def _bind(fn: FamilyFn[P], name: str, param: P) -> RuleFn:
    def bound(args: Args, inputs: list[Value]) -> Out:
        return fn(name, param, args, inputs)

    bound.__name__ = bound.__qualname__ = f"{fn.__name__}[{name}]"
    bound.__doc__ = fn.__doc__
    return bound


# -- helpers for rules -------------------------------------------------------


def tensor(v: Value, what: str = "input") -> TensorType:
    if v == NONE:
        raise ShapeMismatch(f"{what} is None, not a tensor")
    if not isinstance(v, TensorType):
        raise ShapeMismatch(
            f"{what} is a tuple {show(v)}, not a tensor; pick an element with Select"
        )
    return v


def batched(v: Value, layer: str, what: str = "input") -> TensorType:
    """A tensor input that must have the batch dimension (for rules that take unbatched
    values in some inputs only)."""
    x = tensor(v, what)
    if not x.batched:
        raise ShapeMismatch(f"{layer}'s {what} {x} has no batch dimension")
    return x


def ntuple(value: Any, n: int) -> tuple[int, ...]:
    """torch's ``_ntuple``: an int repeated n times, or a list of n."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * n


def need_rank(x: TensorType, ranks: Sequence[int], layer: str, layout: str) -> None:
    if len(x.shape) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeMismatch(f"{layer} expects {want} dimensions per sample ({layout}), got {x}")


def fill(args: dict[str, Any], name: str, value: Any) -> None:
    """Fill in an inferred argument, or check the one the spec gave."""
    given = args.get(name)
    if given is None:
        args[name] = value
    elif given != value and not (isinstance(given, list) and tuple(given) == value):
        raise ShapeMismatch(f"{name} is {given} but the input gives {value}", arg=name)


def prod(xs: Sequence[int]) -> int:
    return math.prod(xs)


_N = {1: "1d", 2: "2d", 3: "3d"}


def _batch_first(args: Args) -> None:
    if not args.get("batch_first"):
        raise ShapeMismatch(
            "specnet puts the batch first: set batch_first: true", arg="batch_first"
        )


# -- helpers -------------------------------------------------------------------

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INTS = ("int32", "int64")
_PROMOTION = ("bool", "uint8", "int8", "int16", "int32", "int64", *_FLOATS)
_LAYOUT = {1: "C, L", 2: "C, H, W", 3: "C, D, H, W"}


_WEIGHTS = "float32"
"""The dtype specnet builds every layer's weights in (``train.precision`` runs them lower)."""
_REDUCED = ("float16", "bfloat16")
"""The lower precisions torch's norms take beside float32 weights."""


def _float(v: Value, layer: str, mixed: bool = False, holds: bool = True) -> TensorType:
    """The single tensor input of a layer with weights, which must be of their dtype.

    ``mixed``: torch's norms also take float16 and bfloat16 beside float32 weights (on the
    CPU), and any floating-point input where they hold no float32 tensors (``holds`` false:
    no affine weights, nor running statistics)."""
    x = tensor(v)
    if x.dtype not in _FLOATS:
        raise ShapeMismatch(f"{layer} expects a floating-point input, got {x}")
    if x.dtype == _WEIGHTS or (mixed and (not holds or x.dtype in _REDUCED)):
        return x
    if mixed:
        raise ShapeMismatch(
            f"{layer} holds {_WEIGHTS} weights (or running statistics) and torch does not mix "
            f"them with a {x.dtype} input: its input must be {_WEIGHTS}, float16 or bfloat16, "
            f"got {x} {x.dtype}"
        )
    raise ShapeMismatch(
        f"{layer}'s weights are {_WEIGHTS} and torch does not mix dtypes: its input must be "
        f"{_WEIGHTS}, got {x} {x.dtype} (train.precision runs a float32 model in bf16 or fp16)"
    )


def _min_rank(x: TensorType, n: int, layer: str, layout: str) -> None:
    if len(x.shape) < n:
        dims = "dimension" if n == 1 else "dimensions"
        raise ShapeMismatch(f"{layer} expects at least {n} {dims} per sample ({layout}), got {x}")


_SPATIAL = {n: ", ".join(layout.split(", ")[1:]) + " or " + layout for n, layout in _LAYOUT.items()}


def _spatial(x: TensorType, n: int, layer: str) -> None:
    """Pools and pads: ``n`` spatial dimensions, with or without channels in front."""
    need_rank(x, (n, n + 1), layer, _SPATIAL[n])


def _fill(args: Args, name: str, value: Any, x: Value) -> None:
    """:func:`fill`, with the input named in the message."""
    try:
        fill(args, name, value)
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
    x: TensorType,
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


def _dim(d: int, x: TensorType, arg: str = "dim", batch: bool = False) -> int:
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


def _positive(x: TensorType, shape: Sequence[int], arg: str, what: str) -> tuple[int, ...]:
    if any(v < 1 for v in shape):
        raise ShapeMismatch(f"{what} {list(shape)} of {x} has an empty dimension", arg=arg)
    return tuple(shape)


def _promote(xs: Sequence[TensorType]) -> str:
    """torch's type promotion for the usual dtypes (float16 with bfloat16 gives float32)."""
    known = [x.dtype for x in xs if x.dtype in _PROMOTION]
    if len(known) < len(xs):
        return xs[0].dtype
    best = max(known, key=_PROMOTION.index)
    return "float32" if {"float16", "bfloat16"} <= set(known) and best == "bfloat16" else best


def _broadcast(layer: str, xs: Sequence[TensorType]) -> tuple[int, ...]:
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


def _aligned(layer: str, xs: Sequence[TensorType]) -> TensorType:
    """torch broadcasting of tensors with and without a batch dimension (shape only; the
    dtype is the first's). Batched tensors have equal ranks (:func:`_broadcast`); one without
    a batch is aligned with them from the right, its leading dimension meeting the batch
    only if it is 1. Without any batched tensor: torch's broadcasting of the whole shapes."""
    shapes = " and ".join(str(v) for v in xs)
    with_batch = [x for x in xs if x.batched]
    if not with_batch:
        rank = max(len(x.shape) for x in xs)
        out = [1] * rank
        for x in xs:
            for i, d in enumerate(x.shape, start=rank - len(x.shape)):
                if d != out[i] and 1 not in (d, out[i]):
                    raise ShapeMismatch(f"{layer} inputs differ: {shapes}")
                out[i] = max(d, out[i])
        return TensorType(tuple(out), xs[0].dtype, batched=False)
    sample = list(_broadcast(layer, with_batch))
    for u in (x for x in xs if not x.batched):
        trailing = u.shape
        if len(u.shape) > len(sample) + 1:
            raise ShapeMismatch(
                f"{layer}: {u} has more dimensions than the batched {with_batch[0]} with its "
                f"batch, so it would add dimensions in front of the batch ({shapes})"
            )
        if len(u.shape) == len(sample) + 1:
            if u.shape[0] != 1:
                raise ShapeMismatch(
                    f"{layer}: the first dimension of {u} meets the batch of "
                    f"{with_batch[0]} and must be 1, not {u.shape[0]} ({shapes})"
                )
            trailing = u.shape[1:]
        start = len(sample) - len(trailing)
        for i, d in enumerate(trailing, start=start):
            if d != sample[i] and 1 not in (d, sample[i]):
                raise ShapeMismatch(f"{layer} inputs differ: {shapes}")
            sample[i] = max(d, sample[i])
    return TensorType(tuple(sample), xs[0].dtype)
