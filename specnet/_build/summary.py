"""``specnet.summary``: per-layer output shape, parameters and multiply-accumulates.

Computed from the spec's shape inference and a build on the meta device: no
memory for weights, no forward pass on real data.
"""

from __future__ import annotations

from dataclasses import dataclass

from specnet._front.infer import infer
from specnet._front.layout import macs, walk
from specnet._front.rules.base import show
from specnet._front.spec import Spec

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


def summarize(spec: Spec) -> Summary:
    """The summary of a spec's model (torch is used only on the meta device)."""
    import torch

    from .compiler import materialize
    from .containers import module

    plan = infer(spec)
    with torch.device("meta"):
        model = module(materialize(plan, spec.source))
    rows = []
    for name, depth, step in walk(plan):
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
        rows.append(Row(name, step.kind, depth, show(step.output), params, macs(step)))
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
        macs(plan),
        None if plan.train_output is None else show(plan.train_output),
        macs(plan, training=True),
    )
