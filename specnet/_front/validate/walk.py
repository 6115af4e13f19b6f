"""The node walk: a node is a layer, a container or a block use; ``repeat`` and ``for``
unroll into copies, ``if`` leaves a node out, ``splice`` opens a Sequential into its parent."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import Path
from ..expr import INDEX, ExprError, bind, is_expression, names, template
from ..limits import MAX_EXPANDED, MAX_LAYERS
from ..registry import CONTAINERS, layers
from ..spec import Graph, Layer, ModuleDict, ModuleList, Node, Sequential
from .blocks import _size, substitute
from .containers import ABSENT, Absent, Containers
from .context import LAYER_NAME, NODE_KEYS, Ctx, TooLarge, placeholder, show

__all__ = ["Copy", "Walker", "expanded_size"]


@dataclass(frozen=True)
class Copy:
    """One copy of a node that ``repeat`` or ``for`` makes (the node itself, without them)."""

    raw: Any
    ctx: Ctx
    index: int
    present: bool
    """False where the node's ``if:`` is false."""
    shared: bool
    """Every copy is the same (nothing in it depends on ``$index`` or a table row)."""


class Walker(Containers):
    """Validates nodes, counting the layers of the expanded model."""

    def __init__(self, doc: Any) -> None:
        super().__init__(doc)
        self.layer_count = 0

    def node(self, raw: Any, path: Path, ctx: Ctx) -> Node | None:
        """Validate one node; ``repeat`` and ``input`` are handled by the caller."""
        if isinstance(raw, str):
            if placeholder(raw, ctx):
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
        if placeholder(type_name, ctx):
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
        if "call" in raw and not ctx.in_graph:
            self.error(
                (*path, "call"),
                "'call' gives a layer's forward keyword arguments and is only allowed on the "
                "nodes of a Graph (a Sequential calls its layers with one input alone)",
                key=True,
                ctx=ctx,
            )
        args = {k: v for k, v in raw.items() if k not in NODE_KEYS}
        if not self.computed(args, path, ctx):
            return None
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

    def computed(self, args: dict[str, Any], path: Path, ctx: Ctx) -> bool:
        """Whether every expression among a node's arguments has been computed; those left
        name a parameter that is not known here (reported), or failed (reported already)."""
        ok = True
        stack: list[tuple[Any, Path]] = [(v, (*path, k)) for k, v in args.items()]
        while stack:
            v, p = stack.pop()
            if isinstance(v, list):
                stack.extend((x, (*p, i)) for i, x in enumerate(v))
            elif isinstance(v, dict) and "type" not in v:
                stack.extend((x, (*p, k)) for k, x in v.items())
            elif is_expression(v) and not placeholder(v, ctx):
                missing = names(v) - set(ctx.env)
                if INDEX in missing:
                    self.error(
                        p,
                        "'$index' is the copy's number inside a node with 'repeat' or 'for'",
                        ctx=ctx,
                    )
                elif missing:
                    unknown = ", ".join(f"'${n}'" for n in sorted(missing))
                    self.error(p, f"unknown parameter {unknown}", ctx=ctx)
                elif not any(f.endswith(f"(in {v!r})") for f in self.failures):
                    self.error(p, f"cannot compute this expression (in {v!r})", ctx=ctx)
                ok = False
        return ok

    def repeat_of(self, raw: Any, path: Path, ctx: Ctx) -> int | None:
        """The number of copies ``repeat`` asks for (1 where it depends on a placeholder)."""
        if not isinstance(raw, dict) or "repeat" not in raw:
            return 1
        n = raw["repeat"]
        if placeholder(n, ctx):
            return 1
        if is_expression(n):
            n = self.compute(n, (*path, "repeat"), ctx)
            if n is None:
                return None
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            self.error(
                (*path, "repeat"), f"'repeat' must be a whole number >= 0, got {show(n)}", ctx=ctx
            )
            return None
        return n

    def compute(self, value: Any, path: Path, ctx: Ctx) -> Any:
        """An expression's value with ``ctx``'s parameters (``None`` after an error)."""
        if not is_expression(value):
            return value
        try:
            out = bind(value, ctx.env)
        except ExprError as exc:
            self.failed_at(ctx)(path, f"{exc.message} (in {value!r})")
            return None
        if is_expression(out):
            missing = ", ".join(f"'${n}'" for n in sorted(names(out) - set(ctx.env)))
            self.error(path, f"unknown parameter {missing}", ctx=ctx)
            return None
        return out

    def copies(self, raw: Any, path: Path, ctx: Ctx, *, each: bool = False) -> list[Copy] | None:
        """The copies of a container's child: one, or what ``repeat``/``for`` make, each
        with ``$index`` (and its table row) bound and its ``if:`` decided; ``each``: every
        copy on its own even if nothing in the node tells them apart (a name does)."""
        if not isinstance(raw, dict):
            return [Copy(raw, ctx, 0, True, True)]
        if "repeat" in raw and "for" in raw:
            self.error(
                (*path, "for"), "a node has either 'repeat' or 'for', not both", ctx=ctx, key=True
            )
            return None
        rows: list[dict[str, Any]] | None = None
        if "for" in raw:
            rows = self.table(raw["for"], (*path, "for"), ctx)
            if rows is None:
                return None
            n = len(rows)
        else:
            got = self.repeat_of(raw, path, ctx)
            if got is None:
                return None
            n = got
        if n > MAX_LAYERS:
            self.count_over(path, ctx)
        body = {k: v for k, v in raw.items() if k not in ("repeat", "for")}
        varies = each or rows is not None or ("repeat" in raw and _uses_index(body))
        out: list[Copy] = []
        for i in range(n):
            copy_raw, inner = body, ctx
            if varies:
                self.expanded += _size(body, MAX_EXPANDED)
                if self.expanded > MAX_EXPANDED:
                    self.error(
                        path,
                        f"too large: more than {MAX_EXPANDED} values once 'repeat' and 'for' "
                        "are unrolled (a fixed limit, specnet._front.limits.MAX_EXPANDED)",
                        ctx=ctx,
                    )
                    raise TooLarge
                row = rows[i] if rows is not None else {}
                values = {**row, INDEX: i}
                inner = replace(ctx, env={**ctx.env, **values})
                copy_raw = _bind_copy(body, path, values, self.failed_at(ctx))
                if row:
                    args = self.row_arguments(copy_raw, row, (*path, "for", i), body, ctx)
                    if args is None:
                        return None
                    copy_raw = {**copy_raw, **args}
            present = self.condition(copy_raw, path, inner)
            if present is None:
                return None
            out.append(Copy(copy_raw, inner, i, present, not varies))
            if not varies and i:
                break  # the same copy n times: checked once
        if not varies and out:
            out = [out[0]] * n
        return out

    def row_arguments(
        self, raw: dict[str, Any], row: dict[str, Any], path: Path, body: Any, ctx: Ctx
    ) -> dict[str, Any] | None:
        """The keys of a table row that are arguments of the node's type (and that the node
        does not give itself); every other key must be used in the node as ``$key``."""
        type_name = raw.get("type")
        takes: set[str] | None = None
        if isinstance(type_name, str):
            if type_name in self.blocks:
                takes = set(self.blocks[type_name].params)
            elif type_name in CONTAINERS:
                takes = set(CONTAINERS[type_name].by_name)
            elif type_name in layers():
                takes = set(layers()[type_name].by_name)
        used = _names_in(body)
        args: dict[str, Any] = {}
        ok = True
        for k, v in row.items():
            if k == "if":
                continue
            if (takes is None or k in takes) and k not in raw:
                args[k] = v
            elif k not in used:
                self.error(
                    (*path, k),
                    f"table column '{k}' is not an argument of {type_name} and the node does "
                    f"not use ${k}",
                    key=True,
                    kind="unknown_key",
                    ctx=ctx,
                )
                ok = False
        return args if ok else None

    def table(self, rows: Any, path: Path, ctx: Ctx) -> list[dict[str, Any]] | None:
        if placeholder(rows, ctx):
            return []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            self.error(
                path,
                f"'for' is a table: a list of mappings of arguments, got {show(rows)}",
                ctx=ctx,
            )
            return None
        if len(rows) > MAX_LAYERS:
            self.count_over(path, ctx)
        ok = True
        for i, row in enumerate(rows):
            for k in row:
                if k in NODE_KEYS and k != "if":
                    self.error(
                        (*path, i, k),
                        f"'{k}' is a node key; a table row gives arguments (and 'if')",
                        key=True,
                        ctx=ctx,
                    )
                    ok = False
        return rows if ok else None

    def condition(self, raw: Any, path: Path, ctx: Ctx) -> bool | None:
        """A node's ``if:``: True where absent or placeholder, ``None`` after an error."""
        if not isinstance(raw, dict) or "if" not in raw:
            return True
        value = raw["if"]
        if placeholder(value, ctx):
            return True
        if value is None:
            self.error((*path, "if"), "'if' must be true or false, got null", ctx=ctx)
            return None
        value = self.compute(value, (*path, "if"), ctx)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error((*path, "if"), f"'if' must be true or false, got {show(value)}", ctx=ctx)
            return None
        return value

    def children(
        self, items: list[tuple[str, Any, Path]], ctx: Ctx, inline: bool
    ) -> list[tuple[str, Node]] | None:
        """Validate container children: ``repeat``/``for`` unroll inline (a list), side by
        side (a name with ``{...}`` parts) or into a nested Sequential (a plain name);
        ``if: false`` leaves a child out; ``splice: true`` opens a Sequential into its parent."""
        out: list[tuple[str, Node]] = []
        ok = True
        for name, raw, path in items:
            made = self.copies(raw, path, ctx, each="{" in name and not inline)
            if made is None:
                ok = False
                continue
            splice = self.splice_of(raw, path, ctx)
            if splice is None:
                ok = False
                continue
            group: list[tuple[str, Node]] = []
            checked: Node | None = None
            for c in made:
                if not c.present:
                    continue
                node = (
                    checked if c.shared and checked is not None else self.node(c.raw, path, c.ctx)
                )
                if node is None:
                    ok = False
                    break
                if c.shared and checked is None:
                    checked = node
                    self.count(node, sum(1 for x in made if x.present), path, ctx)
                else:
                    self.count(node, 1, path, ctx)
                label = name
                if "{" in name and not inline and not names(name) & c.ctx.placeholders:
                    try:
                        label = template(name, c.ctx.env)
                    except ExprError as exc:
                        self.error(path, exc.message, key=True, ctx=ctx)
                        ok = False
                        break
                    if not LAYER_NAME.fullmatch(label):
                        self.error(
                            path,
                            f"layer name '{label}' (from '{name}') must use only letters, "
                            "digits, '_' and '-'",
                            key=True,
                            ctx=ctx,
                        )
                        ok = False
                        break
                parts = self.opened(node, path, ctx) if splice else [(label, node)]
                if parts is None:
                    ok = False
                    break
                group.extend(parts)
            if inline:
                out.extend((str(len(out)), node) for _, node in group)
            elif splice or "{" in name:
                out.extend(group)
            elif len(group) > 1:
                copies = tuple((str(i), node) for i, (_, node) in enumerate(group))
                out.append((name, Sequential(path, copies, notes=ctx.notes)))
            else:
                out.extend(group)
        if ok and not inline:
            seen: set[str] = set()
            for label, node in out:
                if label in seen:
                    self.error(node.path, f"two layers are named '{label}'", ctx=ctx)
                    ok = False
                seen.add(label)
        return out if ok else None

    def unrolled(self, raw: Any, path: Path, ctx: Ctx) -> Node | Absent | None:
        """A graph node: one node, or the Sequential of the copies ``repeat``/``for`` make
        (one copy is the node itself); :data:`ABSENT` where ``if:`` (or ``repeat: 0``)
        leaves it out."""
        if self.splice_of(raw, path, ctx):
            self.error((*path, "splice"), "'splice' is for the layers of a Sequential", ctx=ctx)
            return None
        if isinstance(raw, dict) and ("repeat" in raw or "for" in raw):
            kids = self.children([("", raw, path)], ctx, inline=True)
            if kids is None:
                return None
            if not kids:
                return ABSENT
            if len(kids) == 1:
                return kids[0][1]
            return Sequential(path, tuple(kids), notes=ctx.notes)
        present = self.condition(raw, path, ctx)
        if present is None:
            return None
        if not present:
            return ABSENT
        return self.node(raw, path, ctx)

    def splice_of(self, raw: Any, path: Path, ctx: Ctx) -> bool | None:
        if not isinstance(raw, dict) or "splice" not in raw:
            return False
        value = raw["splice"]
        if not isinstance(value, bool):
            self.error((*path, "splice"), f"'splice' is true or false, got {show(value)}", ctx=ctx)
            return None
        return value

    def opened(self, node: Node, path: Path, ctx: Ctx) -> list[tuple[str, Node]] | None:
        """A spliced node's layers, for its parent."""
        if not isinstance(node, Sequential):
            self.error(
                (*path, "splice"),
                f"'splice' puts a Sequential's layers into its parent; this is a "
                f"{type(node).__name__ if not isinstance(node, Layer) else node.type}",
                ctx=ctx,
            )
            return None
        return list(node.children)

    def count(self, node: Node, n: int, path: Path, ctx: Ctx) -> None:
        self.layer_count += expanded_size(node) * (n - 1)
        if self.layer_count > MAX_LAYERS:
            self.count_over(path, ctx)

    def count_over(self, path: Path, ctx: Ctx) -> None:
        self.error(
            path,
            f"model too large: more than {MAX_LAYERS} layers once blocks and repeat are expanded "
            "(a fixed limit, specnet._front.limits.MAX_LAYERS)",
            ctx=ctx,
        )
        raise TooLarge


def _uses_index(raw: Any) -> bool:
    """Whether ``$index`` appears in a node (its own copies' ``$index``: nested nodes with
    their own ``repeat`` or ``for`` count only there)."""
    stack = [raw]
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "$" in v and INDEX in names(v):
            return True
        if isinstance(v, dict):
            if v is not raw and ("repeat" in v or "for" in v):
                stack.extend(x for k, x in v.items() if k in ("repeat", "for"))
            else:
                stack.extend(v.values())
                stack.extend(k for k in v if isinstance(k, str))
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _bind_copy(
    raw: dict[str, Any], path: Path, values: dict[str, Any], failed: Any
) -> dict[str, Any]:
    """A copy of a node with ``values`` (``$index``, a table row) bound; inside nested nodes
    with their own ``repeat`` or ``for``, ``$index`` is theirs (bound there only in those
    keys)."""
    outer = {k: v for k, v in values.items() if k != INDEX}

    def walk(v: Any, p: Path, top: bool, env: dict[str, Any]) -> Any:
        if isinstance(v, dict):
            if not top and ("repeat" in v or "for" in v):
                return {
                    k: substitute(x, (*p, k), env, failed)
                    if k in ("repeat", "for")
                    else walk(x, (*p, k), False, outer)
                    for k, x in v.items()
                }
            return {k: walk(x, (*p, k), False, env) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, (*p, i), False, env) for i, x in enumerate(v)]
        return substitute(v, p, env, failed) if env else v

    out: dict[str, Any] = walk(raw, path, True, values)
    return out


def _names_in(raw: Any) -> set[str]:
    """The ``$names`` used anywhere in a node."""
    found: set[str] = set()
    stack = [raw]
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "$" in v:
            found |= names(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
            stack.extend(k for k in v if isinstance(k, str))
        elif isinstance(v, list):
            stack.extend(v)
    return found


def expanded_size(node: Node) -> int:
    if isinstance(node, Layer):
        return 1 + sum(expanded_size(v) for v in node.args.values() if isinstance(v, Node))
    if isinstance(node, (Sequential, ModuleDict)):
        return 1 + sum(expanded_size(c) for _, c in node.children)
    if isinstance(node, ModuleList):
        return 1 + sum(expanded_size(c) for c in node.children)
    if isinstance(node, Graph):
        return 1 + sum(expanded_size(g.node) for g in node.nodes)
    return 1
