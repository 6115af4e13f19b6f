"""Checking a type's arguments against its description (layers, containers, ``train:``
components and block parameters alike): strict types, ranges, unknown keys refused."""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..errors import Path, did_you_mean
from ..limits import MAX_SUGGEST
from ..registry import Param, TypeDef
from ..spec import DTYPES, Node, unknown_dtype
from ..types import TypeSpec, describe, pydantic_type, uses_node
from .collector import Collector
from .context import NODE_KEYS, Ctx, placeholder, show

__all__ = ["Arguments", "args_model", "fits", "pydantic_problem", "wrong_value"]

_BOOL_WORDS = ("yes", "no", "on", "off", "y", "n")
"""What YAML 1.1 read as booleans and YAML 1.2 (specnet, JSON, the editors) reads as text."""


def wrong_value(expected: str, value: Any) -> str:
    """The one wording of a value of the wrong type or out of range, in every part of a
    spec (layer arguments, parameters, ``train:``): ``expected int >= 1, got 0``.

    ``expected`` is a type's :func:`~specnet._front.types.describe`; a YAML 1.1 boolean
    word where a bool is expected gets a hint, since it reads as a string here.
    """
    hint = ""
    if "bool" in expected and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        hint = " (write true or false)"
    return f"expected {expected}, got {show(value)}{hint}"


_PYDANTIC_TYPES = {
    "int_type": "int",
    "int_parsing": "int",
    "int_from_float": "int",
    "float_type": "float",
    "float_parsing": "float",
    "bool_type": "bool",
    "bool_parsing": "bool",
    "string_type": "str",
    "list_type": "list",
    "tuple_type": "list",
    "dict_type": "mapping",
    "model_type": "mapping",
    "model_attributes_type": "mapping",
    "none_required": "null",
}
_PYDANTIC_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def pydantic_problem(err: Mapping[str, Any]) -> str:
    """A Pydantic validation error (one of ``ValidationError.errors()``) in the wording of
    :func:`wrong_value` and the unknown/missing key messages.

    For checks whose type has no description to :func:`describe`: what Pydantic's error
    type and context say is all there is. Pydantic's own message is the last resort
    (custom errors carry specnet's messages already).
    """
    kind = str(err.get("type", ""))
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    loc = err.get("loc") or ("",)
    name = str(loc[-1])
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"unknown key '{name}'"
    if kind == "missing":
        return f"missing '{name}'"
    if kind in _PYDANTIC_TYPES:
        return wrong_value(_PYDANTIC_TYPES[kind], value)
    if kind in _PYDANTIC_BOUNDS:
        sign, key = _PYDANTIC_BOUNDS[kind]
        what = "int" if isinstance(value, int) else "float"
        return wrong_value(f"{what} {sign} {ctx.get(key)}", value)
    if kind == "literal_error":
        return wrong_value(f"one of {ctx.get('expected')}", value)
    if kind == "string_pattern_mismatch":
        return wrong_value(f"str matching {ctx.get('pattern')}", value)
    if kind == "too_short":
        return wrong_value(f"at least {ctx.get('min_length')} values", value)
    if kind == "too_long":
        return wrong_value(f"at most {ctx.get('max_length')} values", value)
    return str(err.get("msg", "invalid value"))


@functools.cache
def args_model(t: TypeDef) -> type[BaseModel]:
    """The Pydantic model of a type's arguments: strict, unknown keys forbidden."""
    fields: dict[str, Any] = {}
    for p in t.params:
        py = pydantic_type(p.type, p.range)
        if p.required and p.name not in t.infers:
            fields[p.name] = (py, Field(description=p.doc))
        else:
            fields[p.name] = (
                py | None if p.default is None or p.name in t.infers else py,
                Field(None, description=p.doc),
            )
    model: type[BaseModel] = create_model(
        f"{t.name}Args", __config__=ConfigDict(strict=True, extra="forbid"), **fields
    )
    return model


@functools.cache
def _value_model(type_key: str) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        "Value",
        __config__=ConfigDict(strict=True),
        value=(pydantic_type(json.loads(type_key)), ...),
    )
    return model


def fits(t: TypeSpec, value: Any) -> bool:
    """Whether ``value`` has type ``t``, checked as arguments are (a block's or the model's
    parameter, a constant ``forward`` keyword)."""
    try:
        _value_model(json.dumps(t, sort_keys=True)).model_validate({"value": value})
    except ValidationError:
        return False
    return True


class Arguments(Collector):
    """Argument checking; nested nodes are handed to :meth:`node` (the walk)."""

    def node(self, raw: Any, path: Path, ctx: Ctx) -> Node | None:
        raise NotImplementedError  # the walk (walk.Walker) provides it

    def check_args(
        self,
        t: TypeDef,
        raw: Mapping[str, Any],
        path: Path,
        ctx: Ctx,
        allowed_extra: tuple[str, ...] = NODE_KEYS,
    ) -> dict[str, Any] | None:
        """Validate ``raw`` (the node minus its node keys) against ``t``'s arguments."""
        given = dict(raw)
        skipped = {k for k, v in given.items() if placeholder(v, ctx)}
        for k in skipped:
            del given[k]
        node_params = {p.name for p in t.params if uses_node(p.type)}
        ok = True
        try:
            args_model(t).model_validate({k: v for k, v in given.items() if k not in node_params})
        except ValidationError as exc:
            reported: set[str] = set()
            errors = exc.errors(include_url=False)
            # A misspelt key reads better as "unknown 'kernal_size', did you mean
            # 'kernel_size'" alone than with "missing 'kernel_size'" beside it.
            unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
            missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing"]
            for u in (u for u in unknown if len(u) <= MAX_SUGGEST):
                reported.update(difflib.get_close_matches(u, missing, n=1, cutoff=0.6))
            for err in errors:
                name = str(err["loc"][0]) if err["loc"] else ""
                if err["type"] == "missing" and (name in skipped or name in node_params):
                    continue
                if name in reported:
                    continue
                reported.add(name)
                ok = False
                if err["type"] == "extra_forbidden":
                    choices = [p.name for p in t.params] + list(allowed_extra)
                    self.error(
                        (*path, name),
                        f"unknown argument '{name}' for {t.name}" + did_you_mean(name, choices),
                        key=True,
                        kind="unknown_key",
                        ctx=ctx,
                    )
                elif err["type"] == "missing":
                    self.error(
                        (*path, name),
                        f"missing required argument '{name}' for {t.name}",
                        kind="missing",
                        ctx=ctx,
                    )
                else:
                    self.error(
                        (*path, name),
                        _argument_problem(t.by_name[name], given.get(name)),
                        kind="type",
                        ctx=ctx,
                    )
        out = {k: v for k, v in given.items() if k not in node_params}
        for name in node_params & set(given):
            value = given[name]
            if value is None and t.by_name[name].default is None:
                out[name] = None
                continue
            node = self.node(value, (*path, name), replace(ctx, in_graph=False))
            if node is None:
                ok = False
            out[name] = node
        for name in node_params - set(given) - skipped:
            if t.by_name[name].required:
                ok = False
                self.error(
                    (*path, name),
                    f"missing required argument '{name}' for {t.name}",
                    kind="missing",
                    ctx=ctx,
                )
        return out if ok else None


def _argument_problem(param: Param, value: Any) -> str:
    """A layer's (or op's, or a torch object's) argument of the wrong type: its type's
    description, or for a dtype the dtype names with the canonical one meant."""
    t = param.type
    if isinstance(t, dict) and "enum" in t and set(t["enum"]) <= set(DTYPES):
        return unknown_dtype(value, tuple(t["enum"]))
    return wrong_value(describe(param.type, param.range), value)
