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
from ..registry import TypeDef
from ..spec import Node
from ..types import TypeSpec, describe, pydantic_type, uses_node
from .collector import Collector
from .context import NODE_KEYS, Ctx, placeholder, show

__all__ = ["Arguments", "args_model", "fits"]


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
                    param = t.by_name[name]
                    value = given.get(name)
                    hint = ""
                    if isinstance(value, str) and value.lower() in (
                        "yes",
                        "no",
                        "on",
                        "off",
                        "y",
                        "n",
                    ):
                        hint = " (write true or false)"
                    self.error(
                        (*path, name),
                        f"expected {describe(param.type, param.range)}, got {show(value)}{hint}",
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
