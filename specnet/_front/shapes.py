"""Shape rules: how each layer's output shape follows from its input and arguments.

One rule per layer family, registered with :func:`rule`. A rule receives the
layer's arguments (as the spec gave them, torch's defaults filled in) and the
values flowing in, and returns the arguments with the inferred ones filled in,
the output value and the multiply-accumulate count of one sample. It raises
:class:`ShapeMismatch` when the input does not fit.

Shapes are per sample: the batch dimension is implicit and always first, so a
rule never sees it. Everything here is plain Python (no torch import):
validation reads :data:`INFERS` without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["INFERS", "RULES", "Out", "Rule", "ShapeMismatch", "T", "Value", "rule"]


@dataclass(frozen=True)
class T:
    """A tensor flowing through the model: the shape of one sample and its dtype."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"[{dims}]" if self.dtype.startswith("float") else f"[{dims}] {self.dtype}"


Value = Union[T, tuple["Value", ...]]  # noqa: UP007
"""A tensor, or a tuple of values (e.g. an LSTM's ``(output, (h, c))``)."""


def show(v: Value) -> str:
    if isinstance(v, T):
        return str(v)
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
class Rule:
    fn: RuleFn
    infers: tuple[str, ...]
    inputs: tuple[int, int | None]
    """How many inputs the layer takes: (at least, at most or None for any)."""


MAX_INPUTS = 8
"""Most inputs an ``Add``, ``Mul`` or ``Concat`` takes (TorchScript has no ``*args``)."""

RULES: dict[str, Rule] = {}
INFERS: dict[str, tuple[str, ...]] = {}


def rule(
    *names: str, infers: tuple[str, ...] = (), inputs: tuple[int, int | None] = (1, 1)
) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` as the shape rule of the layer types ``names``."""

    def add(fn: RuleFn) -> RuleFn:
        for name in names:
            if name in RULES:
                raise ValueError(f"shape rule for {name} registered twice")
            RULES[name] = Rule(fn, infers, inputs)
            if infers:
                INFERS[name] = infers
        return fn

    return add


# -- helpers for rules -------------------------------------------------------


def tensor(v: Value, what: str = "input") -> T:
    if not isinstance(v, T):
        raise ShapeMismatch(
            f"{what} is a tuple {show(v)}, not a tensor; pick an element with Select"
        )
    return v


def ntuple(value: Any, n: int) -> tuple[int, ...]:
    """torch's ``_ntuple``: an int repeated n times, or a list of n."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * n


def need_rank(x: T, ranks: Sequence[int], layer: str, layout: str) -> None:
    if len(x.shape) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeMismatch(f"{layer} expects {want} dimensions per sample ({layout}), got {x}")


def infer(args: dict[str, Any], name: str, value: Any) -> None:
    """Fill in an inferred argument, or check the one the spec gave."""
    given = args.get(name)
    if given is None:
        args[name] = value
    elif given != value and not (isinstance(given, list) and tuple(given) == value):
        raise ShapeMismatch(f"{name} is {given} but the input gives {value}", arg=name)


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return math.floor((size + 2 * p - d * (k - 1) - 1) / s + 1)


def prod(xs: Sequence[int]) -> int:
    return math.prod(xs)
