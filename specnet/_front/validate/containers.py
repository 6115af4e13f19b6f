"""The rules of each container kind, dispatched by kind from one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import Path, did_you_mean
from ..registry import CONTAINERS, attributes, layers, name_taken
from ..spec import Graph, GraphNode, Layer, ModuleDict, ModuleList, Node, NodeRef, Sequential
from ..types import describe
from .args import fits, wrong_value
from .blocks import Blocks
from .context import LAYER_NAME, NODE_KEYS, TEMPLATE_NAME, Ctx, placeholder, show

__all__ = ["ABSENT", "Absent", "Containers"]


class Absent:
    """A graph node that ``if:`` leaves out."""


ABSENT = Absent()


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

    def unrolled(self, raw: Any, path: Path, ctx: Ctx) -> Node | Absent | None:
        raise NotImplementedError  # the walk (walk.Walker) provides it

    def named(
        self, value: Any, path: Path, container: str, ctx: Ctx, *, templates: bool = True
    ) -> list[tuple[str, Any, Path]] | None:
        """The children of a mapping, by name; a name may have ``{expression}`` parts
        (filled in for each copy, :meth:`Walker.children`) where ``templates``."""
        what = f"{container} '{path[-1]}'"
        if not isinstance(value, dict):
            self.error(
                path, f"{what} must be a mapping of names to layers, got {show(value)}", ctx=ctx
            )
            return None
        taken = attributes(container)
        items = []
        for name, raw in value.items():
            if not (LAYER_NAME.fullmatch(name) or (templates and TEMPLATE_NAME.fullmatch(name))):
                self.error(
                    (*path, name),
                    f"layer name '{name}' must use only letters, digits, '_' and '-'"
                    + (" (and {expression} parts)" if templates else ""),
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

    def free_names(
        self,
        kids: list[tuple[str, Node]],
        items: list[tuple[str, Any, Path]],
        container: str,
        ctx: Ctx,
    ) -> bool:
        """Names made from ``{...}`` parts must not be attributes the built container has
        (the names as written were checked by :meth:`named`)."""
        written = {name for name, _, _ in items}
        taken = attributes(container)
        ok = True
        for label, node in kids:
            if label in taken and label not in written:
                self.error(node.path, name_taken(container, label), key=True, ctx=ctx)
                ok = False
        return ok

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
            if kids and items and not self.free_names(kids, items, "Sequential", ctx):
                return None
        if kids == []:
            self.error(
                (*path, "layers"),
                "Sequential has no layers left ('repeat: 0' and 'if: false' leave layers out)",
                ctx=ctx,
            )
            return None
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
        if kids == []:
            self.error(
                (*path, "layers"),
                "ModuleList has no layers left ('repeat: 0' and 'if: false' leave layers out)",
                ctx=ctx,
            )
            return None
        between = None
        if args.get("between") is not None:
            if not self.alone(
                args["between"],
                (*path, "between"),
                "'between'",
                ("repeat", "for", "if", "splice"),
                ctx,
            ):
                return None
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
        if kids is None or not self.free_names(kids, items, "ModuleDict", ctx):
            return None
        names = [name for name, _ in kids]
        if not names:
            self.error(
                (*path, "layers"),
                "ModuleDict has no layers left ('repeat: 0' and 'if: false' leave layers out)",
                ctx=ctx,
            )
            return None
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
        items = self.named(args["nodes"], (*path, "nodes"), "Graph", ctx, templates=False)
        if items is None:
            return None
        if not items:
            self.error((*path, "nodes"), "a Graph needs at least one node", ctx=ctx)
            return None
        known: list[str] = list(inputs)
        later = [name for name, _, _ in items]
        nodes: list[GraphNode] = []
        left_out: dict[str, str] = {}
        """Nodes left out by ``if``, each standing for its input."""
        ok = True
        inner = replace(ctx, in_graph=True)
        for name, raw, npath in items:
            if name in inputs:
                self.error(npath, f"node '{name}' has the name of a graph input", key=True, ctx=ctx)
                ok = False
            refs = self.references(raw, npath, known, later, ctx, name)
            node = self.unrolled(raw, npath, inner)
            call = self.keywords(raw, npath, node, known, later, ctx, name)
            later.remove(name)
            known.append(name)
            if node is None or refs is None or call is None:
                ok = False
                continue
            refs = tuple(left_out.get(r, r) for r in refs)
            if node is ABSENT:  # its name stands for its (first) input
                if not refs:
                    self.error(
                        (*npath, "if"),
                        f"'{name}' has no input to stand for it when 'if' leaves it out",
                        ctx=ctx,
                    )
                    ok = False
                    continue
                left_out[name] = refs[0]
                continue
            assert isinstance(node, Node)
            call = tuple(
                (k, NodeRef(left_out.get(v.name, v.name)) if isinstance(v, NodeRef) else v)
                for k, v in call
            )
            nodes.append(GraphNode(name, node, refs, call))
        found = self.graph_outputs(args.get("output"), (*path, "output"), known, items[-1][0], ctx)
        if found is None:
            return None
        trained = self.graph_outputs(
            args.get("train_output"), (*path, "train_output"), known, None, ctx
        )
        if not ok or trained is None:
            return None
        outputs = tuple(left_out.get(o, o) for o in found[0])
        train_outputs = tuple(left_out.get(o, o) for o in trained[0])
        self.unused(nodes, (*path, "nodes"), (*outputs, *train_outputs), ctx)
        return Graph(
            path,
            tuple(inputs),
            tuple(nodes),
            outputs,
            found[1],
            train_outputs,
            trained[1],
            notes=ctx.notes,
        )

    def graph_outputs(
        self, value: Any, where: Path, known: list[str], default: str | None, ctx: Ctx
    ) -> tuple[list[str], bool] | None:
        """A graph's ``output`` or ``train_output``: the names, and whether they make a tuple."""
        key = str(where[-1])
        if value is None:
            return ([default] if default is not None else []), False
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if not names or not all(isinstance(o, str) for o in names):
            self.error(
                where, f"'{key}' must be a node name or a list of them, got {show(value)}", ctx=ctx
            )
            return None
        ok = True
        for i, o in enumerate(names):
            if o not in known:
                self.error(
                    (*where, i) if isinstance(value, list) else where,
                    f"{key} '{o}' is not a node of this graph" + did_you_mean(o, known),
                    ctx=ctx,
                )
                ok = False
        return (list(names), isinstance(value, list)) if ok else None

    def unused(
        self, nodes: list[GraphNode], path: Path, outputs: tuple[str, ...], ctx: Ctx
    ) -> None:
        """Warn of each node whose value no output reads, directly or through other nodes."""
        reads = {g.name: g.reads for g in nodes}
        needed: set[str] = set()
        stack = list(outputs)
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(reads.get(name, ()))
        for g in nodes:
            if g.name not in needed:
                self.warn(
                    (*path, g.name),
                    f"node '{g.name}' is never used: no output of the graph reads its value, "
                    "directly or through other nodes",
                    key=True,
                    ctx=ctx,
                )

    def keywords(
        self,
        raw: Any,
        path: Path,
        node: Node | Absent | None,
        known: list[str],
        later: list[str],
        ctx: Ctx,
        name: str,
    ) -> tuple[tuple[str, Any], ...] | None:
        """A graph node's ``call:``: keyword arguments of its layer's ``forward`` that the
        layer's rule declares, constants or (tensors) names of earlier nodes."""
        given = raw.get("call") if isinstance(raw, dict) else None
        if given is None or node is None or isinstance(node, Absent):
            return ()
        where = (*path, "call")
        if not isinstance(node, Layer):
            what = "a Sequential of copies" if isinstance(node, Sequential) else "a container"
            if isinstance(raw, dict) and not ("repeat" in raw or "for" in raw):
                what = f"a {type(node).__name__}"
            self.error(
                where,
                f"'call' gives a layer's forward keyword arguments; '{name}' is {what}",
                ctx=ctx,
            )
            return None
        rule = layers()[node.type].rule
        accepted = dict(rule.call.keywords) if rule is not None and rule.call is not None else {}
        if not isinstance(given, dict):
            self.error(
                where, f"'call' must be a mapping of keyword arguments, got {show(given)}", ctx=ctx
            )
            return None
        out: list[tuple[str, Any]] = []
        ok = True
        for k, v in given.items():
            kw = accepted.get(k)
            if kw is None:
                hint = did_you_mean(k, list(accepted)) or (
                    _choices(list(accepted)) if accepted else ""
                )
                self.error(
                    (*where, k),
                    f"unknown keyword '{k}' for {node.type}'s forward" + hint,
                    key=True,
                    kind="unknown_key",
                    ctx=ctx,
                )
                ok = False
            elif placeholder(v, ctx):
                continue
            elif not kw.tensor:
                if not fits(kw.type, v):
                    self.error(
                        (*where, k),
                        wrong_value(describe(kw.type), v),
                        kind="type",
                        ctx=ctx,
                    )
                    ok = False
                out.append((k, v))
            elif v is None:
                out.append((k, None))
            elif not isinstance(v, str):
                self.error(
                    (*where, k),
                    f"'{k}' is a tensor: the name of a graph input or an earlier node (or null), "
                    f"got {show(v)}",
                    kind="type",
                    ctx=ctx,
                )
                ok = False
            elif self.reference(v, (*where, k), known, later, ctx, name, k):
                out.append((k, NodeRef(v)))
            else:
                ok = False
        return tuple(out) if ok else None

    def references(
        self, raw: Any, path: Path, known: list[str], later: list[str], ctx: Ctx, name: str
    ) -> tuple[str, ...] | None:
        """A graph node's ``input:``; without one, the node before it (none for a type that
        takes no input, such as a Parameter)."""
        ref = raw.get("input") if isinstance(raw, dict) else None
        if ref is None:
            return () if _takes_no_input(raw) else (known[-1],)
        refs = [ref] if isinstance(ref, str) else ref
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            self.error(
                (*path, "input"),
                f"'input' must be a node name or a list of them, got {show(ref)}",
                ctx=ctx,
            )
            return None
        ok = True
        for i, r in enumerate(refs):
            where = (*path, "input") if isinstance(ref, str) else (*path, "input", i)
            ok = self.reference(r, where, known, later, ctx, name, "input") and ok
        return tuple(refs) if ok else None

    def reference(
        self,
        r: str,
        where: Path,
        known: list[str],
        later: list[str],
        ctx: Ctx,
        name: str,
        what: str,
    ) -> bool:
        """Whether ``r`` names a graph input or an earlier node (else the error is reported)."""
        if r == name:
            own = "input" if what == "input" else f"{what} (its own value)"
            self.error(where, f"node '{name}' cannot be its own {own}", ctx=ctx)
        elif r in later:
            self.error(
                where,
                f"{what} '{r}' is defined later in the graph; nodes may only use earlier nodes",
                ctx=ctx,
            )
        elif r not in known:
            self.error(
                where,
                f"{what} '{r}' is not a graph input or an earlier node"
                + (did_you_mean(r, known) or _choices(known)),
                ctx=ctx,
            )
        else:
            return True
        return False


def _takes_no_input(raw: Any) -> bool:
    """Whether the node is of a layer type that takes no input (a Parameter, a Buffer)."""
    name = raw if isinstance(raw, str) else raw.get("type") if isinstance(raw, dict) else None
    t = layers().get(name) if isinstance(name, str) else None
    return t is not None and t.rule is not None and t.rule.inputs[1] == 0


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
