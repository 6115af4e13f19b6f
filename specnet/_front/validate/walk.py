"""The node walk: a node is a layer, a container or a block use; ``repeat`` unrolls."""

from __future__ import annotations

from typing import Any

from ..errors import Path
from ..limits import MAX_LAYERS
from ..registry import CONTAINERS, layers
from ..spec import Graph, Layer, ModuleDict, ModuleList, Node, Sequential
from .containers import Containers
from .context import NODE_KEYS, Ctx, TooLarge, placeholder, show

__all__ = ["Walker", "expanded_size"]


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
        args = {k: v for k, v in raw.items() if k not in NODE_KEYS}
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

    def repeat_of(self, raw: Any, path: Path, ctx: Ctx) -> int | None:
        if not isinstance(raw, dict) or "repeat" not in raw:
            return 1
        n = raw["repeat"]
        if placeholder(n, ctx):
            return 1
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            self.error(
                (*path, "repeat"), f"'repeat' must be a whole number >= 1, got {show(n)}", ctx=ctx
            )
            return None
        return n

    def children(
        self, items: list[tuple[str, Any, Path]], ctx: Ctx, inline: bool
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

    def count(self, node: Node, n: int, path: Path, ctx: Ctx) -> None:
        self.layer_count += expanded_size(node) * (n - 1)
        if self.layer_count > MAX_LAYERS:
            self.error(
                path,
                f"model too large: more than {MAX_LAYERS} layers once blocks and repeat are expanded "
                "(a fixed limit, specnet._front.limits.MAX_LAYERS)",
                ctx=ctx,
            )
            raise TooLarge


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
