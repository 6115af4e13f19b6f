"""The small type language of argument descriptions, and what it becomes.

A type is one of ``"int" | "float" | "bool" | "str" | "null" | "any" | "node"``,
``{"enum": [...]}``, ``{"list": T, "len": N}`` (``len`` optional) or
``{"map": T}`` (string keys) or ``{"union": [T, ...]}``. The same description yields the Pydantic type used for
validation and the JSON Schema used by editors, so the two cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from annotated_types import Len
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = ["TypeSpec", "describe", "json_schema", "pydantic_type", "uses_node"]

TypeSpec = str | dict[str, Any]

_Number = Union[StrictInt, StrictFloat]  # noqa: UP007 - a runtime type expression


class NodeValue:
    """Marker: the value is a nested spec node, validated by the node walker."""


def pydantic_type(t: TypeSpec) -> Any:
    """The Pydantic (strict) type for a type description."""
    if isinstance(t, str):
        return {
            "int": StrictInt,
            "float": _Number,
            "bool": StrictBool,
            "str": StrictStr,
            "null": None,
            "any": Any,
            "node": Any,
        }[t]
    if "enum" in t:
        return Literal[tuple(t["enum"])]
    if "list" in t:
        inner = pydantic_type(t["list"])
        if "len" in t:
            return Annotated[list[inner], Len(t["len"], t["len"])]  # type: ignore[valid-type]
        return list[inner]  # type: ignore[valid-type]
    if "map" in t:
        return dict[str, pydantic_type(t["map"])]  # type: ignore[misc]
    if "union" in t:
        members = tuple(pydantic_type(m) for m in t["union"])
        return Union[members]  # noqa: UP007
    raise ValueError(f"unknown type description {t!r}")


def json_schema(t: TypeSpec, node_ref: str) -> dict[str, Any]:
    """The JSON Schema for a type description; ``node_ref`` is the ``$ref`` of a node."""
    if isinstance(t, str):
        if t == "node":
            return {"$ref": node_ref}
        return {
            "int": {"type": "integer"},
            "float": {"type": "number"},
            "bool": {"type": "boolean"},
            "str": {"type": "string"},
            "null": {"type": "null"},
            "any": {},
        }[t]
    if "enum" in t:
        return {"enum": list(t["enum"])}
    if "list" in t:
        out: dict[str, Any] = {"type": "array", "items": json_schema(t["list"], node_ref)}
        if "len" in t:
            out["minItems"] = out["maxItems"] = t["len"]
        return out
    if "map" in t:
        return {"type": "object", "additionalProperties": json_schema(t["map"], node_ref)}
    if "union" in t:
        return {"anyOf": [json_schema(m, node_ref) for m in t["union"]]}
    raise ValueError(f"unknown type description {t!r}")


def describe(t: TypeSpec) -> str:
    """A short human name: ``int or list of 2 int``."""
    if isinstance(t, str):
        return {"node": "layer", "null": "null", "any": "any value"}.get(t, t)
    if "enum" in t:
        return "one of " + ", ".join(repr(v) for v in t["enum"])
    if "list" in t:
        n = f"{t['len']} " if "len" in t else ""
        return f"list of {n}{describe(t['list'])}"
    if "map" in t:
        return f"mapping of names to {describe(t['map'])}"
    return " or ".join(describe(m) for m in t["union"])


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
