"""``specnet.summary``: per-layer output shape, parameters and multiply-accumulates.

Computed from the spec's shape inference and a build on the meta device: no
memory for weights, no forward pass on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from specnet._front.infer import Step, infer
from specnet._front.rules.base import show
from specnet._front.spec import NodeRef, Spec

__all__ = ["Row", "Summary", "summarize"]


@dataclass(frozen=True)
class Row:
    name: str
    """Qualified module name, as in ``state_dict()`` keys."""
    type: str
    depth: int
    output: str
    params: int
    macs: int


@dataclass(frozen=True)
class Summary:
    """A table of the model's layers with totals; ``str()`` renders it."""

    rows: tuple[Row, ...]
    input: str
    output: str
    total_params: int
    trainable_params: int
    total_macs: int
    train_output: str | None = None
    """What the model returns in training mode, where its ``train_output`` differs."""
    train_macs: int | None = None
    """Multiply-accumulates in training, where nodes only ``train_output`` needs add some."""

    def __str__(self) -> str:
        header = ("Layer", "Type", "Output", "Params", "MACs")
        lines = [
            (
                "  " * r.depth + (r.name.rsplit(".", 1)[-1] or "(model)"),
                r.type,
                r.output,
                f"{r.params:,}",
                f"{r.macs:,}",
            )
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out = [fmt.format(*header), rule, *(fmt.format(*line) for line in lines), rule]
        trained = "" if self.train_output is None else f"   Training output: {self.train_output}"
        out.append(f"Input: {self.input}   Output: {self.output}{trained}")
        out.append(f"Parameters: {self.total_params:,} ({self.trainable_params:,} trainable)")
        more = (
            ""
            if self.train_macs is None or self.train_macs == self.total_macs
            else f" ({self.train_macs:,} in training)"
        )
        out.append(f"Multiply-accumulates per sample: {self.total_macs:,}{more}")
        return "\n".join(out)


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


def _walk(step: Step, name: str, depth: int) -> Iterator[tuple[str, int, Step]]:
    yield name, depth, step
    members = _MEMBERS.get(step.kind)
    if members is None:
        return  # a layer's nested layers (TransformerEncoder.encoder_layer) are its own business
    for path, child in members(step):
        yield from _walk(child, f"{name}.{path}" if name else path, depth + 1)


def _macs(step: Step, training: bool = False) -> int:
    """Multiply-accumulates of one sample through ``step``, in eval mode (or in training,
    where a graph's ``train_output`` needs more nodes: GoogLeNet's auxiliary heads)."""
    members = _MEMBERS.get(step.kind)
    if members is None:
        return step.macs
    run = None if training or not step.train_outputs else _eval_nodes(step)
    return sum(_macs(c, training) for name, c in members(step) if run is None or name in run)


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


def summarize(spec: Spec) -> Summary:
    """The summary of a spec's model (torch is used only on the meta device)."""
    import torch

    from .compiler import materialize
    from .containers import module

    plan = infer(spec)
    with torch.device("meta"):
        model = module(materialize(plan, spec.source))
    rows = []
    for name, depth, step in _walk(plan, "", 0):
        parent, _, attribute = name.rpartition(".")
        try:
            held = model.get_submodule(parent) if name else model
        except AttributeError:  # inside an op written inline
            held = None
        value = getattr(held, attribute, None) if name else model
        if isinstance(value, torch.nn.Module):
            params = sum(p.numel() for p in value.parameters())
        elif isinstance(value, torch.nn.Parameter):  # a tensor its graph holds
            params = value.numel()
        else:  # an op written inline in generated code (Add, Concat), or a buffer
            params = 0
        rows.append(Row(name, step.kind, depth, show(step.output), params, _macs(step)))
    inputs = ", ".join(
        (f"{k} {v.shape}" if len(spec.inputs) > 1 else str(list(v.shape)))
        + ("" if v.batch else " (no batch)")
        for k, v in spec.inputs.items()
    )
    return Summary(
        tuple(rows),
        inputs,
        show(plan.output),
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        _macs(plan),
        None if plan.train_output is None else show(plan.train_output),
        _macs(plan, training=True),
    )
