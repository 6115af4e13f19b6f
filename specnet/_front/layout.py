"""How a plan's modules nest in the built model: each container's children by their path under
its module (``layers.3``, ``between``), and the multiply-accumulates of one sample.

The build lays modules out this way; ``specnet summary`` and the language server name them
with it (``layer1.0.conv1``, as in ``state_dict()`` keys).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .infer import Step
from .spec import NodeRef

__all__ = ["macs", "walk"]


def _attributes(step: Step) -> list[tuple[str, Step]]:
    return list(step.children)


def _held(step: Step) -> list[tuple[str, Step]]:
    return [(f"layers.{name}", child) for name, child in step.children]


def _listed(step: Step) -> list[tuple[str, Step]]:
    between = [] if step.between is None else [("between", step.between)]
    return [*_held(step), *between]


_MEMBERS: dict[str, Callable[[Step], list[tuple[str, Step]]]] = {
    "Sequential": _attributes,
    "Graph": _attributes,
    "ModuleDict": _held,
    "ModuleList": _listed,
}
"""Each container kind's children, by their path under its module (the build's layout)."""


def walk(step: Step, name: str = "", depth: int = 0) -> Iterator[tuple[str, int, Step]]:
    """Each module of the plan, depth first: its qualified name, depth and step."""
    yield name, depth, step
    members = _MEMBERS.get(step.kind)
    if members is None:
        return  # a layer's nested layers (TransformerEncoder.encoder_layer) are its own business
    for path, child in members(step):
        yield from walk(child, f"{name}.{path}" if name else path, depth + 1)


def macs(step: Step, training: bool = False) -> int:
    """Multiply-accumulates of one sample through ``step``, in eval mode (or in training,
    where a graph's ``train_output`` needs more nodes: GoogLeNet's auxiliary heads)."""
    members = _MEMBERS.get(step.kind)
    if members is None:
        return step.macs
    run = None if training or not step.train_outputs else _eval_nodes(step)
    return sum(macs(c, training) for name, c in members(step) if run is None or name in run)


def _eval_nodes(graph: Step) -> set[str]:
    """The nodes of a graph that its eval ``output`` needs, directly or through others."""
    reads = {
        name: {*refs, *(v.name for v in step.keywords.values() if isinstance(v, NodeRef))}
        for (name, refs), (_, step) in zip(graph.calls, graph.children, strict=True)
    }
    needed: set[str] = set()
    stack = list(graph.outputs)
    while stack:
        name = stack.pop()
        if name in reads and name not in needed:
            needed.add(name)
            stack.extend(reads[name])
    return needed
