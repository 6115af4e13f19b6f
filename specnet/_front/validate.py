"""Plain data -> :class:`Spec`, collecting every error with its location.

The walk is recursive over nodes; each node's arguments are checked by a
Pydantic model generated from its registry entry (strict types, unknown keys
forbidden). Blocks are checked once where they are defined and again, with
their parameters substituted, at every use; ``repeat`` is unrolled.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import ErrorItem, Path, SpecValidationError, did_you_mean, format_path
from .limits import MAX_LAYERS
from .registry import CONTAINERS, TypeDef, attributes, layers, name_taken
from .source import Document
from .spec import (
    DTYPES,
    Graph,
    GraphNode,
    Layer,
    ModuleDict,
    ModuleList,
    Node,
    Sequential,
    Spec,
    TensorSpec,
)
from .types import describe, pydantic_type, uses_node

__all__ = ["LAYER_NAME", "Checker", "validate_document"]


_PARAM_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
LAYER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
"""Names of a container's children (and of graph inputs)."""
_BLOCK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NODE_KEYS = ("type", "repeat", "input")
_TOP_KEYS = ("version", "name", "input", "blocks", "model", "train")
_PARAM_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list": {"list": "any"},
    "any": "any",
}


def show(value: Any) -> str:
    """A value as the user wrote it (YAML-ish)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


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


@dataclass(frozen=True)
class _Block:
    name: str
    params: dict[str, Any]
    """name -> type description (required) or ``("default", value)``."""
    body: Any
    path: Path
    unknown_refs: set[str] = field(default_factory=set)
    """``$names`` in the body that are no parameter (reported once, where defined)."""


@dataclass(frozen=True)
class _Ctx:
    """Where the walk is: inside which blocks, and whether ``$params`` are placeholders."""

    placeholders: frozenset[str] = frozenset()
    blocks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    in_graph: bool = False


def _choices(names: list[str], most: int = 8) -> str:
    """``; it may be one of 'a', 'b'`` (the first ``most`` names)."""
    shown = ", ".join(f"'{n}'" for n in names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"; it may be one of {shown}{more}"


class Checker:
    """Walks a document, collecting errors; :meth:`result` raises them all at once."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.src = doc.source
        self.errors: list[ErrorItem] = list(doc.errors)
        self._seen: set[tuple[Path, str]] = set()
        self.blocks: dict[str, _Block] = {}
        self.broken_blocks: set[str] = set()
        self.redirect: dict[Path, Path] = {}
        self.layer_count = 0

    # -- errors -------------------------------------------------------------
    def error(
        self,
        path: Path,
        msg: str,
        *,
        key: bool = False,
        kind: str = "invalid",
        ctx: _Ctx | None = None,
    ) -> None:
        for prefix_len in range(len(path), 0, -1):
            target = self.redirect.get(path[:prefix_len])
            if target is not None:
                notes: tuple[str, ...] = (
                    f"passed into the block at {self.where(path)} ({format_path(path)})",
                )
                path, key = target + path[prefix_len:], False
                break
        else:
            notes = ctx.notes if ctx else ()
        if (path, msg) in self._seen:
            return
        self._seen.add((path, msg))
        self.errors.append(self.src.error(path, msg, kind=kind, key=key, notes=notes))

    def where(self, path: Path) -> str:
        pos = self.src.position(path)
        name = self.src.file or "<spec>"
        return f"{name}:{pos[0]}:{pos[1]}" if pos else name

    # -- arguments ----------------------------------------------------------
    def check_args(
        self,
        t: TypeDef,
        raw: Mapping[str, Any],
        path: Path,
        ctx: _Ctx,
        allowed_extra: tuple[str, ...] = _NODE_KEYS,
    ) -> dict[str, Any] | None:
        """Validate ``raw`` (the node minus its node keys) against ``t``'s arguments."""
        given = dict(raw)
        skipped = {k for k, v in given.items() if _placeholder(v, ctx)}
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
            for u in unknown:
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

    # -- nodes --------------------------------------------------------------
    def node(self, raw: Any, path: Path, ctx: _Ctx) -> Node | None:
        """Validate one node; ``repeat`` and ``input`` are handled by the caller."""
        if isinstance(raw, str):
            if _placeholder(raw, ctx):
                return None
            raw = {"type": raw}
        elif not isinstance(raw, dict):
            self.error(
                path,
                f"expected a layer (a type name, or a mapping with 'type'), got {show(raw)}",
                ctx=ctx,
            )
            return None
        type_name = raw.get("type")
        if type_name is None:
            self.error(
                (*path, "type"),
                "missing 'type': a layer needs a type name",
                kind="missing",
                ctx=ctx,
            )
            return None
        if _placeholder(type_name, ctx):
            return None
        if not isinstance(type_name, str):
            self.error((*path, "type"), f"expected a type name, got {show(type_name)}", ctx=ctx)
            return None
        if "input" in raw and not ctx.in_graph:
            self.error(
                (*path, "input"),
                "'input' names a node's inputs and is only allowed on the nodes of a Graph",
                key=True,
                ctx=ctx,
            )
        args = {k: v for k, v in raw.items() if k not in _NODE_KEYS}
        if type_name in CONTAINERS:
            return self.container(type_name, args, path, ctx)
        if type_name in self.blocks:
            return self.block_use(self.blocks[type_name], args, path, ctx)
        if type_name in self.broken_blocks:
            return None  # its definition's errors are reported already
        reg = layers()
        if type_name not in reg:
            self.error(
                (*path, "type"),
                reg.unknown(type_name, [*CONTAINERS, *self.blocks]),
                kind="unknown_type",
                ctx=ctx,
            )
            return None
        t = reg[type_name]
        checked = self.check_args(t, args, path, ctx)
        self.layer_count += 1
        if checked is None:
            return None
        return Layer(path, type_name, checked, notes=ctx.notes)

    def repeat_of(self, raw: Any, path: Path, ctx: _Ctx) -> int | None:
        if not isinstance(raw, dict) or "repeat" not in raw:
            return 1
        n = raw["repeat"]
        if _placeholder(n, ctx):
            return 1
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            self.error(
                (*path, "repeat"), f"'repeat' must be a whole number >= 1, got {show(n)}", ctx=ctx
            )
            return None
        return n

    def children(
        self, items: list[tuple[str, Any, Path]], ctx: _Ctx, inline: bool
    ) -> list[tuple[str, Node]] | None:
        """Validate container children; ``repeat`` unrolls inline or nests a Sequential."""
        out: list[tuple[str, Node]] = []
        ok = True
        for name, raw, path in items:
            n = self.repeat_of(raw, path, ctx)
            node = self.node(raw, path, ctx)
            if node is None or n is None:
                ok = False
                continue
            self.count(node, n, path, ctx)
            if inline:
                out.extend((str(len(out)), node) for _ in range(n))
            elif n > 1:
                out.append(
                    (
                        name,
                        Sequential(path, tuple((str(i), node) for i in range(n)), notes=ctx.notes),
                    )
                )
            else:
                out.append((name, node))
        return out if ok else None

    def count(self, node: Node, n: int, path: Path, ctx: _Ctx) -> None:
        self.layer_count += _size(node) * (n - 1)
        if self.layer_count > MAX_LAYERS:
            self.error(
                path,
                f"model too large: more than {MAX_LAYERS} layers once blocks and repeat are expanded",
                ctx=ctx,
            )
            raise _TooLarge

    def named(
        self, value: Any, path: Path, container: str, ctx: _Ctx
    ) -> list[tuple[str, Any, Path]] | None:
        what = f"{container} '{path[-1]}'"
        if not isinstance(value, dict):
            self.error(
                path, f"{what} must be a mapping of names to layers, got {show(value)}", ctx=ctx
            )
            return None
        taken = attributes(container)
        items = []
        for name, raw in value.items():
            if not LAYER_NAME.match(name):
                self.error(
                    (*path, name),
                    f"layer name '{name}' must use only letters, digits and '_'",
                    key=True,
                    ctx=ctx,
                )
                continue
            if name in taken:
                self.error(
                    (*path, name),
                    name_taken(container, name),
                    key=True,
                    ctx=ctx,
                )  # kept: its layer is still checked, and no error follows from its absence
            items.append((name, raw, (*path, name)))
        return items

    def container(self, kind: str, args: dict[str, Any], path: Path, ctx: _Ctx) -> Node | None:
        t = CONTAINERS[kind]
        for k in list(args):
            if k not in t.by_name:
                self.error(
                    (*path, k),
                    f"unknown argument '{k}' for {kind}"
                    + did_you_mean(k, [*t.by_name, *_NODE_KEYS]),
                    key=True,
                    kind="unknown_key",
                    ctx=ctx,
                )
                del args[k]
        required = [p.name for p in t.params if p.required]
        for k in required:
            if k not in args:
                self.error(
                    (*path, k),
                    f"missing required argument '{k}' for {kind}",
                    kind="missing",
                    ctx=ctx,
                )
                return None
        inner = replace(ctx, in_graph=False)
        if kind == "Sequential":
            layers_ = args["layers"]
            if isinstance(layers_, list):
                if not layers_:
                    self.error((*path, "layers"), "Sequential needs at least one layer", ctx=ctx)
                    return None
                kids = self.children(
                    [(str(i), r, (*path, "layers", i)) for i, r in enumerate(layers_)],
                    inner,
                    inline=True,
                )
            else:
                if not isinstance(layers_, dict):
                    msg = "Sequential 'layers' must be a list, or a mapping of names to layers"
                    self.error((*path, "layers"), f"{msg}, got {show(layers_)}", ctx=ctx)
                    return None
                items = self.named(layers_, (*path, "layers"), "Sequential", ctx)
                if items is not None and not items:
                    self.error((*path, "layers"), "Sequential needs at least one layer", ctx=ctx)
                    return None
                kids = None if items is None else self.children(items, inner, inline=False)
            return None if kids is None else Sequential(path, tuple(kids), notes=ctx.notes)
        if kind == "ModuleList":
            layers_ = args["layers"]
            if not isinstance(layers_, list) or not layers_:
                self.error(
                    (*path, "layers"),
                    f"ModuleList 'layers' must be a non-empty list, got {show(layers_)}",
                    ctx=ctx,
                )
                return None
            kids = self.children(
                [(str(i), r, (*path, "layers", i)) for i, r in enumerate(layers_)],
                inner,
                inline=True,
            )
            between = None
            if args.get("between") is not None:
                between = self.node(args["between"], (*path, "between"), inner)
                if between is None:
                    return None
                holder = _holds_parameters(between)
                if holder is not None:
                    self.error(
                        (*path, "between"),
                        "'between' is applied after every layer and must have no parameters; "
                        f"{holder} has parameters (a parameter-free layer such as ReLU or Dropout)",
                        ctx=ctx,
                    )
                    return None
            return (
                None
                if kids is None
                else ModuleList(path, tuple(n for _, n in kids), between, notes=ctx.notes)
            )
        if kind == "ModuleDict":
            items = self.named(args["layers"], (*path, "layers"), "ModuleDict", ctx)
            if items is None:
                return None
            kids = self.children(items, inner, inline=False)
            names = [name for name, _, _ in items]
            forward = args.get("forward")
            if forward is None:
                forward = names
            elif (
                not isinstance(forward, list)
                or not all(isinstance(f, str) for f in forward)
                or not forward
            ):
                self.error(
                    (*path, "forward"),
                    f"'forward' must be a non-empty list of layer names, got {show(forward)}",
                    ctx=ctx,
                )
                return None
            for i, f in enumerate(forward):
                if f not in names:
                    self.error(
                        (*path, "forward", i),
                        f"'forward' names unknown layer '{f}'" + did_you_mean(f, names),
                        ctx=ctx,
                    )
                    kids = None
            return (
                None
                if kids is None
                else ModuleDict(path, tuple(kids), tuple(forward), notes=ctx.notes)
            )
        return self.graph(args, path, ctx)

    def graph(self, args: dict[str, Any], path: Path, ctx: _Ctx) -> Node | None:
        inputs = args.get("inputs", ["input"])
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) and LAYER_NAME.match(i) for i in inputs)
        ):
            self.error(
                (*path, "inputs"),
                f"'inputs' must be a non-empty list of names, got {show(inputs)}",
                ctx=ctx,
            )
            return None
        items = self.named(args["nodes"], (*path, "nodes"), "Graph", ctx)
        if items is None:
            return None
        if not items:
            self.error((*path, "nodes"), "a Graph needs at least one node", ctx=ctx)
            return None
        known: list[str] = list(inputs)
        later = [name for name, _, _ in items]
        nodes: list[GraphNode] = []
        ok = True
        inner = replace(ctx, in_graph=True)
        for name, raw, npath in items:
            if name in inputs:
                self.error(npath, f"node '{name}' has the name of a graph input", key=True, ctx=ctx)
                ok = False
            refs = self.references(raw, npath, known, later, ctx, name)
            n = self.repeat_of(raw, npath, ctx)
            node = self.node(raw, npath, inner)
            later.remove(name)
            known.append(name)
            if node is None or refs is None or n is None:
                ok = False
                continue
            self.count(node, n, npath, ctx)
            if n > 1:
                node = Sequential(npath, tuple((str(i), node) for i in range(n)), notes=ctx.notes)
            nodes.append(GraphNode(name, node, refs))
        output = args.get("output")
        tuple_output = isinstance(output, list)
        outputs = [output] if isinstance(output, str) else list(output or [])
        if output is None:
            outputs = [items[-1][0]]
        elif not outputs or not all(isinstance(o, str) for o in outputs):
            self.error(
                (*path, "output"),
                f"'output' must be a node name or a list of them, got {show(output)}",
                ctx=ctx,
            )
            return None
        for i, o in enumerate(outputs):
            if o not in known:
                where = (*path, "output", i) if tuple_output else (*path, "output")
                self.error(
                    where,
                    f"output '{o}' is not a node of this graph" + did_you_mean(o, known),
                    ctx=ctx,
                )
                ok = False
        if not ok:
            return None
        return Graph(
            path, tuple(inputs), tuple(nodes), tuple(outputs), tuple_output, notes=ctx.notes
        )

    def references(
        self, raw: Any, path: Path, known: list[str], later: list[str], ctx: _Ctx, name: str
    ) -> tuple[str, ...] | None:
        ref = raw.get("input") if isinstance(raw, dict) else None
        if ref is None:
            return (known[-1],)
        refs = [ref] if isinstance(ref, str) else ref
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            self.error(
                (*path, "input"),
                f"'input' must be a node name or a list of them, got {show(ref)}",
                ctx=ctx,
            )
            return None
        ok = True
        for i, r in enumerate(refs):
            where = (*path, "input") if isinstance(ref, str) else (*path, "input", i)
            if r == name:
                self.error(where, f"node '{name}' cannot be its own input", ctx=ctx)
                ok = False
            elif r in later:
                self.error(
                    where,
                    f"input '{r}' is defined later in the graph; nodes may only use earlier nodes",
                    ctx=ctx,
                )
                ok = False
            elif r not in known:
                self.error(
                    where,
                    f"input '{r}' is not a graph input or an earlier node"
                    + (did_you_mean(r, known) or _choices(known)),
                    ctx=ctx,
                )
                ok = False
        return tuple(refs) if ok else None

    # -- blocks -------------------------------------------------------------
    def define_blocks(self, raw: Any) -> None:
        path: Path = ("blocks",)
        if not isinstance(raw, dict):
            self.error(
                path, f"'blocks' must be a mapping of block names to definitions, got {show(raw)}"
            )
            return
        reserved = set(layers()) | set(CONTAINERS)
        for name, definition in raw.items():
            bpath = (*path, name)
            if not _BLOCK_NAME.match(name):
                self.error(bpath, f"block name '{name}' must be an identifier", key=True)
                continue
            if name in reserved:
                self.error(bpath, f"block '{name}' has the name of a built-in layer type", key=True)
                continue
            if not isinstance(definition, dict):
                self.error(
                    bpath, f"a block is a mapping with 'params' and 'body', got {show(definition)}"
                )
                continue
            for k in definition:
                if k not in ("params", "body"):
                    self.error(
                        (*bpath, k),
                        f"unknown block key '{k}'" + did_you_mean(k, ["params", "body"]),
                        key=True,
                        kind="unknown_key",
                    )
            if "body" not in definition:
                self.error((*bpath, "body"), f"block '{name}' needs a 'body'", kind="missing")
                continue
            params = self.block_params(definition.get("params", {}), (*bpath, "params"))
            if params is not None:
                self.blocks[name] = _Block(name, params, definition["body"], bpath)
            else:
                self.broken_blocks.add(name)
        # Each body is checked once as written, with its parameters as placeholders.
        for block in self.blocks.values():
            refs = self._check_refs(block.body, (*block.path, "body"), set(block.params))
            block.unknown_refs.update(refs - set(block.params))
            ctx = _Ctx(placeholders=frozenset(block.params) | refs, blocks=(block.name,))
            with contextlib.suppress(_TooLarge):
                self.node(block.body, (*block.path, "body"), ctx)

    def block_params(self, raw: Any, path: Path) -> dict[str, Any] | None:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(
                path,
                f"'params' must map parameter names to a type (int, float, bool, str, list, any) or a default value, got {show(raw)}",
            )
            return None
        params: dict[str, Any] = {}
        for pname, spec in raw.items():
            if not _BLOCK_NAME.match(pname) or pname in _NODE_KEYS:
                self.error((*path, pname), f"'{pname}' cannot be a block parameter name", key=True)
                continue
            if isinstance(spec, str) and spec in _PARAM_TYPES:
                params[pname] = _PARAM_TYPES[spec]
            else:
                params[pname] = ("default", spec)
        return params

    def _check_refs(self, value: Any, path: Path, params: set[str]) -> frozenset[str]:
        """Every ``$name`` in a block body must name one of its parameters; returns the names used."""
        used: set[str] = set()
        stack: list[tuple[Any, Path]] = [(value, path)]
        while stack:
            v, p = stack.pop()
            if isinstance(v, str):
                m = _PARAM_REF.match(v)
                if m:
                    used.add(m.group(1))
                if m and m.group(1) not in params:
                    self.error(
                        p,
                        f"unknown block parameter '{v}'"
                        + did_you_mean(m.group(1), sorted(params)).replace("'", "'$", 1),
                    )
            elif isinstance(v, dict):
                stack.extend((x, (*p, k)) for k, x in v.items())
            elif isinstance(v, list):
                stack.extend((x, (*p, i)) for i, x in enumerate(v))
        return frozenset(used)

    def block_use(self, block: _Block, args: dict[str, Any], path: Path, ctx: _Ctx) -> Node | None:
        if block.name in ctx.blocks:
            self.error(
                (*path, "type"),
                f"block '{block.name}' uses itself (through {' -> '.join(ctx.blocks)})",
                ctx=ctx,
            )
            return None
        values: dict[str, Any] = {}
        ok = True
        for k, v in args.items():
            if k not in block.params:
                self.error(
                    (*path, k),
                    f"unknown parameter '{k}' for block {block.name}"
                    + did_you_mean(k, [*block.params, *_NODE_KEYS]),
                    key=True,
                    kind="unknown_key",
                    ctx=ctx,
                )
                ok = False
            elif not _placeholder(v, ctx):
                values[k] = v
        for pname, spec in block.params.items():
            if isinstance(spec, tuple):
                values.setdefault(pname, spec[1])
            elif pname in values:
                try:
                    args_model(_param_typedef(block.name, pname, spec)).model_validate(
                        {pname: values[pname]}
                    )
                except ValidationError:
                    self.error(
                        (*path, pname),
                        f"expected {describe(spec)}, got {show(values[pname])}",
                        kind="type",
                        ctx=ctx,
                    )
                    ok = False
            elif pname not in args and not difflib.get_close_matches(
                pname, list(args), n=1, cutoff=0.6
            ):
                self.error(
                    (*path, pname),
                    f"missing required parameter '{pname}' for block {block.name}",
                    kind="missing",
                    ctx=ctx,
                )
                ok = False
        if not ok:
            return None
        body_path = (*block.path, "body")
        body = _substitute(
            block.body, body_path, values, {k: (*path, k) for k in args}, self.redirect
        )
        use = f"in block '{block.name}' used at {self.where(path)} ({format_path(path)})"
        inner = _Ctx(
            placeholders=(ctx.placeholders - set(values)) | block.unknown_refs,
            blocks=(*ctx.blocks, block.name),
            notes=(use, *ctx.notes),
        )
        node = self.node(body, body_path, inner)
        for p in [p for p in self.redirect if p[: len(body_path)] == body_path]:
            del self.redirect[p]
        return node

    # -- top level ----------------------------------------------------------
    def inputs(self, raw: Any) -> dict[str, TensorSpec] | None:
        path: Path = ("input",)
        if raw is None:
            self.error(
                path,
                "missing 'input': the shape of one sample, e.g. input: [1, 28, 28]",
                kind="missing",
            )
            return None
        if isinstance(raw, dict) and "shape" not in raw and "dtype" not in raw:
            if not raw:
                self.error(path, "'input' must name at least one input")
                return None
            out = {}
            for name, value in raw.items():
                if not LAYER_NAME.match(name):
                    self.error(
                        (*path, name),
                        f"input name '{name}' must use only letters, digits and '_'",
                        key=True,
                    )
                    continue
                t = self.tensor(value, (*path, name))
                if t is not None:
                    out[name] = t
            return out if len(out) == len(raw) else None
        t = self.tensor(raw, path)
        return None if t is None else {"input": t}

    def tensor(self, raw: Any, path: Path) -> TensorSpec | None:
        dtype = "float32"
        shape = raw
        if isinstance(raw, dict):
            for k in raw:
                if k not in ("shape", "dtype"):
                    self.error(
                        (*path, k),
                        f"unknown key '{k}' in an input" + did_you_mean(k, ["shape", "dtype"]),
                        key=True,
                        kind="unknown_key",
                    )
                    return None
            if "shape" not in raw:
                self.error((*path, "shape"), "an input needs a 'shape'", kind="missing")
                return None
            shape = raw["shape"]
            dtype = raw.get("dtype", "float32")
            if dtype not in DTYPES:
                self.error(
                    (*path, "dtype"),
                    f"unknown dtype {show(dtype)}" + did_you_mean(str(dtype), DTYPES),
                    kind="type",
                )
                return None
            path = (*path, "shape")
        if not isinstance(shape, list) or not shape:
            msg = (
                "a shape is a non-empty list of whole numbers >= 1 (one sample, no batch dimension)"
            )
            self.error(path, f"{msg}, got {show(shape)}", kind="type")
            return None
        bad = [
            i for i, d in enumerate(shape) if isinstance(d, bool) or not isinstance(d, int) or d < 1
        ]
        for i in bad:
            msg = f"a dimension must be a whole number >= 1, got {show(shape[i])}"
            self.error((*path, i), msg, kind="type")
        if bad:
            return None
        return TensorSpec(shape=tuple(shape), dtype=dtype)

    def spec(self, data: Any, train_checker: Callable[[Checker, Any], Any] | None) -> Spec | None:
        if not isinstance(data, dict):
            what = "an empty document" if data is None else show(data)
            self.error(
                (),
                f"a spec is a mapping with at least 'input' and 'model', got {what}",
                kind="type",
            )
            return None
        for k in data:
            if k not in _TOP_KEYS:
                self.error(
                    (k,),
                    f"unknown top-level key '{k}'" + did_you_mean(k, _TOP_KEYS),
                    key=True,
                    kind="unknown_key",
                )
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            self.error(
                ("version",),
                f"unsupported spec version {show(version)}: this specnet reads version 1",
            )
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            self.error(("name",), f"'name' must be a string, got {show(name)}", kind="type")
        inputs = self.inputs(data.get("input"))
        if "blocks" in data:
            self.define_blocks(data["blocks"])
        model: Node | None = None
        if "model" not in data:
            self.error(("model",), "missing 'model': the network", kind="missing")
        else:
            try:
                n = self.repeat_of(data["model"], ("model",), _Ctx())
                model = self.node(data["model"], ("model",), _Ctx())
                if model is not None and n is not None and n > 1:
                    model = Sequential(("model",), tuple((str(i), model) for i in range(n)))
            except _TooLarge:
                model = None
        if model is not None and inputs is not None:
            self.check_model_inputs(model, inputs)
        train = None
        if data.get("train") is not None and train_checker is not None:
            train = train_checker(self, data["train"])
        if self.errors or model is None or inputs is None:
            return None
        return Spec(
            version=1,
            name=name,
            inputs=inputs,
            model=model,
            train=train,
            data=self.doc.data,
            source=self.src,
        )

    def check_model_inputs(self, model: Node, inputs: dict[str, TensorSpec]) -> None:
        if len(inputs) == 1:
            if isinstance(model, Graph) and len(model.inputs) != 1:
                self.error(
                    ("model", "inputs"),
                    f"the graph takes {len(model.inputs)} inputs but the spec's 'input' gives one",
                )
            return
        if not isinstance(model, Graph):
            self.error(
                ("model",), f"a spec with several inputs ({', '.join(inputs)}) needs a Graph model"
            )
            return
        if "inputs" not in self.doc.data["model"]:
            return
        if set(model.inputs) != set(inputs):
            self.error(
                ("model", "inputs"),
                f"the graph's inputs {list(model.inputs)} differ from the spec's inputs {list(inputs)}",
            )


class _TooLarge(Exception):
    pass


def _size(node: Node) -> int:
    if isinstance(node, Layer):
        return 1 + sum(_size(v) for v in node.args.values() if isinstance(v, Node))
    if isinstance(node, (Sequential, ModuleDict)):
        return 1 + sum(_size(c) for _, c in node.children)
    if isinstance(node, ModuleList):
        return 1 + sum(_size(c) for c in node.children)
    if isinstance(node, Graph):
        return 1 + sum(_size(g.node) for g in node.nodes)
    return 1


def _holds_parameters(node: Node) -> str | None:
    """The type of the first layer in ``node`` that may hold parameters, if any."""
    if isinstance(node, Layer):
        rule = layers()[node.type].rule
        if rule is None or not rule.stateless:
            return node.type
        nested = [v for v in node.args.values() if isinstance(v, Node)]
    elif isinstance(node, (Sequential, ModuleDict)):
        nested = [c for _, c in node.children]
    elif isinstance(node, ModuleList):
        nested = [*node.children, *([node.between] if node.between else [])]
    else:
        assert isinstance(node, Graph)
        nested = [g.node for g in node.nodes]
    return next((h for h in map(_holds_parameters, nested) if h is not None), None)


def _placeholder(value: Any, ctx: _Ctx) -> bool:
    if not isinstance(value, str) or not ctx.placeholders:
        return False
    m = _PARAM_REF.match(value)
    return m is not None and m.group(1) in ctx.placeholders


@functools.cache
def _param_typedef_cached(block: str, name: str, spec_key: str) -> TypeDef:
    import json

    from .registry import Param

    return TypeDef(f"{block}.{name}", "custom", (Param(name, json.loads(spec_key)),))


def _param_typedef(block: str, name: str, spec: Any) -> TypeDef:
    import json

    return _param_typedef_cached(block, name, json.dumps(spec, sort_keys=True))


def _substitute(
    value: Any,
    path: Path,
    values: dict[str, Any],
    use_paths: dict[str, Path],
    redirect: dict[Path, Path],
) -> Any:
    if isinstance(value, str):
        m = _PARAM_REF.match(value)
        if m and m.group(1) in values:
            name = m.group(1)
            if name in use_paths:
                redirect[path] = use_paths[name]
            return copy.deepcopy(values[name])
        return value
    if isinstance(value, dict):
        return {
            k: _substitute(v, (*path, k), values, use_paths, redirect) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, (*path, i), values, use_paths, redirect) for i, v in enumerate(value)
        ]
    return value


def validate_document(
    doc: Document, train_checker: Callable[[Checker, Any], Any] | None = None
) -> Spec:
    checker = Checker(doc)
    spec = checker.spec(doc.data, train_checker)
    if spec is None or checker.errors:
        raise SpecValidationError(checker.errors)
    return spec
