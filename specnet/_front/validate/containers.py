"""The rules of each container kind, dispatched by kind from one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import Path, did_you_mean
from ..registry import CONTAINERS, attributes, layers, name_taken
from ..spec import Graph, GraphNode, Layer, ModuleDict, ModuleList, Node, Sequential
from .blocks import Blocks
from .context import LAYER_NAME, NODE_KEYS, Ctx, show

__all__ = ["Containers"]


def _choices(names: list[str], most: int = 8) -> str:
    """``; it may be one of 'a', 'b'`` (the first ``most`` names)."""
    shown = ", ".join(f"'{n}'" for n in names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"; it may be one of {shown}{more}"


class Containers(Blocks):
    """Sequential, ModuleList, ModuleDict and Graph: each kind's own rules."""

    def children(
        self, items: list[tuple[str, Any, Path]], ctx: Ctx, inline: bool
    ) -> list[tuple[str, Node]] | None:
        raise NotImplementedError  # the walk (walk.Walker) provides it

    def repeat_of(self, raw: Any, path: Path, ctx: Ctx) -> int | None:
        raise NotImplementedError  # the walk (walk.Walker) provides it

    def count(self, node: Node, n: int, path: Path, ctx: Ctx) -> None:
        raise NotImplementedError  # the walk (walk.Walker) provides it

    def named(
        self, value: Any, path: Path, container: str, ctx: Ctx
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
            if not LAYER_NAME.fullmatch(name):
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

    def container(self, kind: str, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        t = CONTAINERS[kind]
        for k in list(args):
            if k not in t.by_name:
                self.error(
                    (*path, k),
                    f"unknown argument '{k}' for {kind}"
                    + did_you_mean(k, [*t.by_name, *NODE_KEYS]),
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
        return _CHECKS[kind](self, args, path, ctx)

    def sequential(self, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        inner = replace(ctx, in_graph=False)
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

    def module_list(self, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        inner = replace(ctx, in_graph=False)
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

    def module_dict(self, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        inner = replace(ctx, in_graph=False)
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
            None if kids is None else ModuleDict(path, tuple(kids), tuple(forward), notes=ctx.notes)
        )

    def graph(self, args: dict[str, Any], path: Path, ctx: Ctx) -> Node | None:
        inputs = args.get("inputs", ["input"])
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) and LAYER_NAME.fullmatch(i) for i in inputs)
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
        outputs: list[Any] = (
            [items[-1][0]]
            if output is None
            else [output]
            if isinstance(output, str)
            else list(output)
            if isinstance(output, list)
            else []
        )
        if not outputs or not all(isinstance(o, str) for o in outputs):
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
        self, raw: Any, path: Path, known: list[str], later: list[str], ctx: Ctx, name: str
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


_Check = Callable[[Containers, dict[str, Any], Path, Ctx], Node | None]
_CHECKS: dict[str, _Check] = {
    "Sequential": Containers.sequential,
    "ModuleList": Containers.module_list,
    "ModuleDict": Containers.module_dict,
    "Graph": Containers.graph,
}
"""Each container kind's rules (the kinds are :data:`~specnet._front.registry.CONTAINERS`)."""
