"""Blocks (the "resolve" stage): definitions checked once with their parameters as
placeholders, then each use checked and its parameters substituted into the body."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Path, did_you_mean, format_path
from ..expr import INDEX, ExprError, bind, is_expression, names, parse
from ..limits import MAX_EXPANDED, MAX_SUGGEST
from ..registry import CONTAINERS, layers
from ..source import Document
from ..spec import Node
from ..types import describe
from .args import Arguments, fits, wrong_value
from .context import NODE_KEYS, PARAM_NAME, PARAM_REF, Ctx, TooLarge, placeholder, show

__all__ = ["BLOCK_NAME", "PARAM_TYPES", "Block", "Blocks", "substitute"]

_COPIES = ("repeat", "for", "if", "splice")
"""The keys that make copies of a container's child, or leave it out or open it."""
BLOCK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What a block may be called (it is used as a ``type:``)."""
_QUOTED = re.compile(r"'([^']*)'")
PARAM_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list": {"list": "any"},
    "any": "any",
}


@dataclass(frozen=True)
class Block:
    name: str
    params: dict[str, Any]
    """name -> type description (required) or ``("default", value)``."""
    body: Any
    path: Path
    unknown_refs: set[str] = field(default_factory=set)
    """``$names`` in the body that are no parameter (reported once, where defined)."""
    refs: Counter[str] = field(default_factory=Counter)
    """How many times the body uses each ``$name``."""
    size: int = 0
    """Values in the body as written."""


class Blocks(Arguments):
    """The document's blocks, and their uses."""

    def __init__(self, doc: Document) -> None:
        super().__init__(doc)
        self.blocks: dict[str, Block] = {}
        self.broken_blocks: set[str] = set()
        self.expanded = 0
        """Values copied into block bodies so far (bounded by MAX_EXPANDED)."""
        self.globals: dict[str, Any] = {}
        """The model's parameters (``params:``, the chosen variant), seen in every body."""
        self.unset: set[str] = set()
        """The model's parameters without a value (reported): placeholders everywhere."""
        self.failures: set[str] = set()
        """Expressions that could not be computed (reported), with the reason: an
        expression copied on (a table's cell, a parameter) is not reported again."""

    def alone(self, raw: Any, path: Path, what: str, keys: tuple[str, ...], ctx: Ctx) -> bool:
        """A node that is not a container's child (the model, a block's body, a ModuleList's
        ``between``) has none of the keys that make copies of a child or leave it out."""
        ok = True
        for key in keys:
            if isinstance(raw, dict) and key in raw:
                self.error(
                    (*path, key),
                    f"'{key}' is for the children of a container, not {what}",
                    key=True,
                    ctx=ctx,
                )
                ok = False
        return ok

    def failed_at(self, ctx: Ctx | None) -> Callable[[Path, str], None]:
        """How substitution reports an expression it cannot compute."""

        def failed(path: Path, msg: str) -> None:
            if msg not in self.failures:
                self.failures.add(msg)
                self.error(path, msg, ctx=ctx)

        return failed

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
            if not BLOCK_NAME.fullmatch(name):
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
                body = definition["body"]
                seen = {k: v for k, v in self.globals.items() if k not in params}
                if seen:  # the model's parameters, where the block's own do not hide them
                    body = substitute(body, (*bpath, "body"), seen, self.failed_at(None))
                self.blocks[name] = Block(name, params, body, bpath, size=_size(body))
            else:
                self.broken_blocks.add(name)
        # Each body is checked once as written, with its parameters as placeholders.
        for block in self.blocks.values():
            known = set(block.params) | set(self.globals) | self.unset
            refs = self.check_refs(block.body, (*block.path, "body"), known)
            block.unknown_refs.update(set(refs) - known - {INDEX})
            block.refs.update(refs)
            ctx = Ctx(
                placeholders=frozenset(block.params) | (set(refs) - set(self.globals) - {INDEX}),
                blocks=(block.name,),
                env=self.globals,
            )
            with contextlib.suppress(TooLarge):
                self.node(block.body, (*block.path, "body"), ctx)

    def block_params(
        self, raw: Any, path: Path, what: str = "block parameter"
    ) -> dict[str, Any] | None:
        """``params:`` of a block (or of the model): name -> type or ``("default", value)``."""
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
            if not PARAM_NAME.fullmatch(pname) or pname in (*NODE_KEYS, INDEX):
                self.error(
                    (*path, pname),
                    f"'{pname}' cannot be a {what} name (a letter, then letters, "
                    f"digits and '_'; not {', '.join((*NODE_KEYS, INDEX))})",
                    key=True,
                )
                continue
            if isinstance(spec, str) and spec in PARAM_TYPES:
                params[pname] = PARAM_TYPES[spec]
            else:
                params[pname] = ("default", spec)
        return params

    def check_refs(
        self, value: Any, path: Path, params: set[str], what: str = "block parameter"
    ) -> Counter[str]:
        """Every ``$name`` in a block body (or the model) must name a parameter, and every
        expression must read; returns the names used, with how often."""
        used: Counter[str] = Counter()
        # (value, path, is a key, the names known there or None: not checked)
        stack: list[tuple[Any, Path, bool, set[str] | None]] = [(value, path, False, params)]
        while stack:
            v, p, key, known = stack.pop()
            if isinstance(v, str) and "$" in v:
                found = names(v)
                used.update(found)
                if not PARAM_REF.fullmatch(v) and not key:
                    try:
                        parse(v)
                    except ExprError as exc:
                        self.error(p, f"{exc.message} (in {v!r})")
                unknown = found - known - {INDEX} if known is not None else set()
                for name in sorted(unknown):
                    self.error(
                        p,
                        f"unknown {what} '${name}'"
                        + _QUOTED.sub(r"'$\1'", did_you_mean(name, sorted(known or ()))),
                        key=key,
                    )
            elif isinstance(v, dict):
                inner = known
                rows = v.get("for")
                if known is not None and rows is not None:  # a table's columns are names too
                    if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
                        inner = known | {k for r in rows for k in r if isinstance(k, str)}
                    else:
                        inner = None  # a table from a parameter: its columns are not known here
                stack.extend(
                    (k, (*p, k), True, inner) for k in v if isinstance(k, str) and "$" in k
                )
                stack.extend(
                    (x, (*p, k), False, known if k == "for" else inner) for k, x in v.items()
                )
            elif isinstance(v, list):
                stack.extend((x, (*p, i), False, known) for i, x in enumerate(v))
        return used

    def block_use(self, block: Block, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        if block.name in ctx.blocks:
            self.error(
                (*path, "type"),
                f"block '{block.name}' uses itself (through {' -> '.join(ctx.blocks)})",
                ctx=ctx,
            )
            return None
        values: dict[str, Any] = {}
        unknown = {k for k, v in args.items() if placeholder(v, ctx)}
        """Parameters given a value not known here (the body of a block checked as written)."""
        ok = True
        for k, v in args.items():
            if k not in block.params:
                self.error(
                    (*path, k),
                    f"unknown parameter '{k}' for block {block.name}"
                    + did_you_mean(k, [*block.params, *NODE_KEYS]),
                    key=True,
                    kind="unknown_key",
                    ctx=ctx,
                )
                ok = False
            elif k not in unknown:
                values[k] = v
        for pname, spec in block.params.items():
            if isinstance(spec, tuple):
                if pname not in unknown:
                    values.setdefault(pname, spec[1])
            elif pname in values:
                if not fits(spec, values[pname]):
                    self.error(
                        (*path, pname),
                        wrong_value(describe(spec), values[pname]),
                        kind="type",
                        ctx=ctx,
                    )
                    ok = False
            elif pname not in args and not difflib.get_close_matches(
                pname, [a for a in args if len(a) <= MAX_SUGGEST], n=1, cutoff=0.6
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
        cost = block.size
        for name, uses in block.refs.items():
            if name in values and cost <= MAX_EXPANDED:
                cost += (_size(values[name], MAX_EXPANDED) - 1) * uses
        self.expanded += cost
        if self.expanded > MAX_EXPANDED:
            self.error(
                (*path, "type"),
                f"blocks too large: more than {MAX_EXPANDED} values once block parameters are "
                f"substituted (block '{block.name}' here adds {cost}; a fixed limit, "
                "specnet._front.limits.MAX_EXPANDED)",
                ctx=ctx,
            )
            raise TooLarge
        use = f"in block '{block.name}' used at {self.where(path)} ({format_path(path)})"
        inner = Ctx(
            placeholders=frozenset(unknown | block.unknown_refs | (self.unset - set(values))),
            blocks=(*ctx.blocks, block.name),
            notes=(use, *ctx.notes),
            env={**self.globals, **values},
        )

        body = _substitute(
            block.body,
            body_path,
            values,
            {k: (*path, k) for k in args},
            self.redirect,
            self.failed_at(inner),
        )
        if not self.alone(body, body_path, "a block's body", _COPIES, inner):
            return None
        node = self.node(body, body_path, inner)
        if node is not None:
            node = dataclasses.replace(node, used_at=(path, *node.used_at))
        for p in [p for p in self.redirect if p[: len(body_path)] == body_path]:
            del self.redirect[p]
        return node


def _size(value: Any, most: int | None = None) -> int:
    """How many values ``value`` holds (itself included); counting stops past ``most``."""
    n = 0
    stack = [value]
    while stack and (most is None or n <= most):
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


def _substitute(
    value: Any,
    path: Path,
    values: dict[str, Any],
    use_paths: dict[str, Path],
    redirect: dict[Path, Path],
    failed: Callable[[Path, str], None],
) -> Any:
    """``value`` with the parameters in ``values`` substituted and the expressions that
    use only those computed (the others keep the rest of their names to bind)."""
    if isinstance(value, str):
        m = PARAM_REF.fullmatch(value)
        if m and m.group(1) in values:
            name = m.group(1)
            if name in use_paths:
                redirect[path] = use_paths[name]
            return copy.deepcopy(values[name])
        if is_expression(value) and not m:
            try:
                return bind(value, values)
            except ExprError as exc:
                failed(path, f"{exc.message} (in {value!r})")
        return value
    if isinstance(value, dict):
        return {
            k: _substitute(v, (*path, k), values, use_paths, redirect, failed)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, (*path, i), values, use_paths, redirect, failed)
            for i, v in enumerate(value)
        ]
    return value


def substitute(
    value: Any, path: Path, values: dict[str, Any], failed: Callable[[Path, str], None]
) -> Any:
    """``value`` with ``values`` bound (parameters, ``$index``), as in a block's body."""
    return _substitute(value, path, values, {}, {}, failed)
