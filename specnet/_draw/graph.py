"""A model's plan as a picture's parts: a box per layer, an edge per tensor passed (labelled
with its shape), and the containers and block uses as nested clusters.

Nothing here lays anything out: :mod:`.dot` writes these parts for Graphviz.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from specnet._build.summary import Summary
from specnet._front.infer import Step, input_values
from specnet._front.layout import macs
from specnet._front.rules.base import Value, show
from specnet._front.spec import Graph, Layer, NodeRef, Spec
from specnet._front.validate.context import spec_text

__all__ = ["Box", "Cluster", "Drawing", "Edge", "drawing"]

_ARGS_SHOWN = 4
"""Arguments written in a box (the spec's own, in its order); hovering shows them all."""


@dataclass
class Box:
    id: str
    name: str
    """Qualified module name (``layer1.0.conv1``); the model's input and output are ``input``
    and ``output``."""
    type: str
    args: str
    """The key arguments, as the box shows them."""
    params: int
    macs: int
    output: str
    details: dict[str, str]
    clusters: tuple[str, ...] = ()
    """The ids of the clusters holding it, outermost first."""
    kind: str = "layer"
    """``layer``, ``input`` or ``output``."""


@dataclass
class Cluster:
    id: str
    name: str
    type: str
    params: int
    block: str | None
    """The block whose use this is, if any."""
    parent: str | None
    boxes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Edge:
    tail: str
    head: str
    label: str
    clusters: tuple[str, ...] = ()
    """The clusters holding both ends (folding one hides the edge)."""


@dataclass
class Drawing:
    title: str
    boxes: dict[str, Box] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    total_params: int = 0


Source = tuple[str, Value]
"""Where a value comes from: a box's id and the value."""


class _Drawer:
    def __init__(self, summary: Summary, title: str) -> None:
        self.params = {row.name: row.params for row in summary.rows}
        self.out = Drawing(title, total_params=summary.total_params)
        self.count = 0

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def connect(self, sources: list[Source], head: str, inside: tuple[str, ...]) -> None:
        for tail, value in sources:
            shared = tuple(c for c in inside if c in self.out.boxes[tail].clusters)
            self.out.edges.append(Edge(tail, head, show(value), shared))

    def box(
        self, step: Step, name: str, sources: list[Source], inside: tuple[str, ...]
    ) -> list[Source]:
        box_id = self.new_id("n")
        node = step.node
        given = dict(node.args) if isinstance(node, Layer) else {}
        shown = [f"{k}={spec_text(v)}" for k, v in given.items() if not isinstance(v, dict)]
        args = ", ".join(shown[:_ARGS_SHOWN]) + (", ..." if len(shown) > _ARGS_SHOWN else "")
        details = {
            "module": name or "(model)",
            "type": step.kind,
            "arguments": ", ".join(
                f"{k}={spec_text(v)}" for k, v in step.args.items() if not isinstance(v, dict)
            ),
            "input": ", ".join(show(v) for _, v in sources),
            "output": show(step.output),
            "parameters": f"{self.params.get(name, 0):,}",
            "multiply-accumulates": f"{macs(step):,}",
        }
        self.out.boxes[box_id] = Box(
            box_id,
            name,
            step.kind,
            args,
            self.params.get(name, 0),
            macs(step),
            show(step.output),
            details,
            inside,
        )
        for c in inside:
            self.out.clusters[c].boxes.append(box_id)
        self.connect(sources, box_id, inside)
        return [(box_id, step.output)]

    def cluster(self, step: Step, name: str, inside: tuple[str, ...]) -> tuple[str, ...]:
        cluster_id = self.new_id("c")
        node = step.node
        block = str(node.path[1]) if node.used_at and len(node.path) > 1 else None
        self.out.clusters[cluster_id] = Cluster(
            cluster_id,
            name or "model",
            step.kind,
            self.params.get(name, 0),
            block,
            inside[-1] if inside else None,
        )
        return (*inside, cluster_id)

    def step(
        self, step: Step, name: str, sources: list[Source], inside: tuple[str, ...]
    ) -> list[Source]:
        def child_name(part: str) -> str:
            return f"{name}.{part}" if name else part

        kind = step.kind
        if kind in ("Sequential", "ModuleList"):
            here = self.cluster(step, name, inside)
            current = sources
            prefix = "" if kind == "Sequential" else "layers."
            for part, child in step.children:
                current = self.step(child, child_name(prefix + part), current, here)
                if step.between is not None:
                    current = self.step(step.between, child_name("between"), current, here)
            return current
        if kind == "ModuleDict":
            here = self.cluster(step, name, inside)
            children = dict(step.children)
            current = sources
            forward = getattr(step.node, "forward", ())
            for part in forward:
                current = self.step(children[part], child_name(f"layers.{part}"), current, here)
            return current
        if kind == "Graph" and isinstance(step.node, Graph):
            here = self.cluster(step, name, inside)
            values: dict[str, list[Source]] = {}
            for i, input_name in enumerate(step.node.inputs):
                values[input_name] = [sources[i]] if i < len(sources) else []
            if len(step.node.inputs) == 1:
                values[step.node.inputs[0]] = sources
            for (node_name, refs), (part, child) in zip(step.calls, step.children, strict=True):
                given = [s for r in refs for s in values.get(r, [])]
                # keyword tensors (call: {attn_mask: mask}) are read too
                given += [
                    s
                    for v in child.keywords.values()
                    if isinstance(v, NodeRef)
                    for s in values.get(v.name, [])
                ]
                values[node_name] = self.step(child, child_name(part), given, here)
            return [s for o in step.outputs for s in values.get(o, [])]
        return self.box(step, name, sources, inside)


def drawing(spec: Spec, plan: Step, summary: Summary, title: str) -> Drawing:
    """The parts of ``spec``'s picture (``plan`` its shape inference, ``summary`` its counts)."""
    d = _Drawer(summary, title)
    for name, tensor in spec.inputs.items():
        label = f"{name} {list(tensor.shape)}" + ("" if tensor.batch else " (no batch)")
        d.out.boxes[f"in:{name}"] = Box(
            f"in:{name}", name, "input", label, 0, 0, label, {"input": label}, kind="input"
        )
    values = input_values(spec)
    order = plan.node.inputs if isinstance(plan.node, Graph) and len(spec.inputs) > 1 else values
    sources: list[Source] = [(f"in:{n}", values[n]) for n in order]
    results = d.step(plan, "", sources, ())
    d.out.boxes["out:"] = Box(
        "out:", "output", "output", show(plan.output), 0, 0, show(plan.output), {}, kind="output"
    )
    d.connect(results, "out:", ())
    return d.out
