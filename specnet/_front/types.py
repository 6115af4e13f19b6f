"""The small type language of argument descriptions, and what it becomes.

A type is one of ``"int" | "float" | "bool" | "str" | "null" | "any" | "node"``,
``{"enum": [...]}``, ``{"list": T, "len": N}`` (``len`` optional) or
``{"map": T}`` (string keys) or ``{"union": [T, ...]}``. The same description yields the Pydantic type used for
validation and the JSON Schema used by editors, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Len, Lt
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = ["Range", "TypeSpec", "describe", "json_schema", "pydantic_type", "uses_node"]

TypeSpec = str | dict[str, Any]

_Number = Union[StrictInt, StrictFloat]  # noqa: UP007 - a runtime type expression


@dataclass(frozen=True)
class Range:
    """The values torch accepts for a number (or for each number of a list)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """``low`` itself is refused."""
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(v: float | None) -> str:
    return str(int(v)) if v is not None and float(v).is_integer() else str(v)


def _bounds(r: Range) -> tuple[Any, ...]:
    out: list[Any] = []
    if r.low is not None:
        out.append(Gt(r.low) if r.low_open else Ge(r.low))
    if r.high is not None:
        out.append(Lt(r.high) if r.high_open else Le(r.high))
    return tuple(out)


def pydantic_type(t: TypeSpec, bounds: Range | None = None) -> Any:
    """The Pydantic (strict) type for a type description; ``bounds`` limit its numbers."""
    if isinstance(t, str):
        leaf = {
            "int": StrictInt,
            "float": _Number,
            "bool": StrictBool,
            "str": StrictStr,
            "null": None,
            "any": Any,
            "node": Any,
        }[t]
        limits = _bounds(bounds) if bounds is not None and t in ("int", "float") else ()
        if limits:
            return Annotated[(leaf, *limits)]
        return leaf
    if "enum" in t:
        return Literal[tuple(t["enum"])]
    if "list" in t:
        inner = pydantic_type(t["list"], bounds)
        if "len" in t:
            return Annotated[list[inner], Len(t["len"], t["len"])]  # type: ignore[valid-type]
        return list[inner]  # type: ignore[valid-type]
    if "map" in t:
        return dict[str, pydantic_type(t["map"], bounds)]  # type: ignore[misc]
    if "union" in t:
        members = tuple(pydantic_type(m, bounds) for m in t["union"])
        return Union[members]  # noqa: UP007
    raise ValueError(f"unknown type description {t!r}")


def _schema_bounds(r: Range | None) -> dict[str, Any]:
    if r is None:
        return {}
    out: dict[str, Any] = {}
    if r.low is not None:
        out["exclusiveMinimum" if r.low_open else "minimum"] = r.low
    if r.high is not None:
        out["exclusiveMaximum" if r.high_open else "maximum"] = r.high
    return out


def json_schema(t: TypeSpec, node_ref: str, bounds: Range | None = None) -> dict[str, Any]:
    """The JSON Schema for a type description; ``node_ref`` is the ``$ref`` of a node."""
    if isinstance(t, str):
        if t == "node":
            return {"$ref": node_ref}
        if t in ("int", "float"):
            return {"type": "integer" if t == "int" else "number", **_schema_bounds(bounds)}
        return {
            "bool": {"type": "boolean"},
            "str": {"type": "string"},
            "null": {"type": "null"},
            "any": {},
        }[t]
    if "enum" in t:
        return {"enum": list(t["enum"])}
    if "list" in t:
        items = json_schema(t["list"], node_ref, bounds)
        out: dict[str, Any] = {"type": "array", "items": items}
        if "len" in t:
            out["minItems"] = out["maxItems"] = t["len"]
        return out
    if "map" in t:
        return {"type": "object", "additionalProperties": json_schema(t["map"], node_ref, bounds)}
    if "union" in t:
        return {"anyOf": [json_schema(m, node_ref, bounds) for m in t["union"]]}
    raise ValueError(f"unknown type description {t!r}")


def describe(t: TypeSpec, bounds: Range | None = None) -> str:
    """A short human name: ``int >= 1 or list of 2 int >= 1``."""
    if isinstance(t, str):
        name = {"node": "layer", "null": "null", "any": "any value"}.get(t, t)
        limited = bounds is not None and t in ("int", "float") and str(bounds)
        return f"{name} {bounds}" if limited else name
    if "enum" in t:
        return "one of " + ", ".join(repr(v) for v in t["enum"])
    if "list" in t:
        n = f"{t['len']} " if "len" in t else ""
        return f"list of {n}{describe(t['list'], bounds)}"
    if "map" in t:
        return f"mapping of names to {describe(t['map'], bounds)}"
    return " or ".join(describe(m, bounds) for m in t["union"])


def uses_node(t: TypeSpec) -> bool:
    """Whether a value of this type may hold a nested node."""
    if isinstance(t, str):
        return t == "node"
    if "list" in t:
        return uses_node(t["list"])
    if "map" in t:
        return uses_node(t["map"])
    if "union" in t:
        return any(uses_node(m) for m in t["union"])
    return False
