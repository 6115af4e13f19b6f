"""Plan -> ``nn.Module`` tree.

``Sequential`` becomes ``nn.Sequential``. ``ModuleList``, ``ModuleDict`` and
``Graph`` become ``torch.fx.GraphModule``s whose ``forward`` is generated
straight-line code (one call per layer, no interpreter loop), so a built graph
runs as fast as a hand-written ``forward`` and works with ``torch.compile`` and
``torch.jit.script``. Submodule names are the spec's names, so ``state_dict()``
keys are the ones a hand-written module with those attribute names has.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import fx, nn

from ._errors import SpecError, SpecValidationError
from ._infer import Step, infer
from ._registry import layers
from ._source import SourceMap
from ._spec import Spec

__all__ = ["build_module", "materialize"]

_RESERVED = frozenset(dir(nn.Module))


def _ctor_value(value: Any, source: SourceMap) -> Any:
    if isinstance(value, Step):
        return materialize(value, source)
    if isinstance(value, list):
        return tuple(value)
    return value


def _layer(step: Step, source: SourceMap) -> nn.Module:
    cls = layers()[step.kind].build_target()
    kwargs = {k: _ctor_value(v, source) for k, v in step.args.items()}
    try:
        module: nn.Module = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        if isinstance(exc, SpecError):
            raise
        msg = f"torch.nn.{step.kind} refused these arguments: {exc}"
        raise SpecValidationError(
            [source.error(step.node.path, msg, notes=step.node.notes)]
        ) from None
    return module


def _check_names(step: Step, source: SourceMap) -> None:
    for name, child in step.children:
        if name in _RESERVED:
            msg = f"'{name}' is the name of an nn.Module attribute; choose another name"
            raise SpecValidationError([source.error(child.node.path, msg, key=True)])


def _graph_module(
    step: Step, holder: nn.Module, targets: dict[str, str], inputs: Sequence[str], class_name: str
) -> nn.Module:
    """Generate ``forward`` for a graph-like container with torch.fx."""
    graph = fx.Graph()
    env: dict[str, fx.Node] = {name: graph.placeholder(name) for name in inputs}
    last = env[inputs[0]]
    for name, refs in step.calls:
        args = tuple(env[r] for r in refs) if refs else (last,)
        last = graph.call_module(targets[name], args)
        if refs or step.kind == "Graph":
            env[name] = last
    if step.kind == "Graph":
        outs = [env[o] for o in step.outputs]
        graph.output(tuple(outs) if step.tuple_output else outs[0])
    else:
        graph.output(last)
    gm = fx.GraphModule(holder, graph, class_name=class_name)
    # GraphModule re-creates intermediate containers as plain Modules; keep the real ones.
    for name, child in holder.named_children():
        setattr(gm, name, child)
    return gm


def materialize(step: Step, source: SourceMap) -> nn.Module:
    """Build the module a plan describes (parameters initialised as torch does)."""
    _check_names(step, source)
    if step.kind == "Sequential":
        named = [(name, materialize(child, source)) for name, child in step.children]
        return nn.Sequential(OrderedDict(named))
    if step.kind == "ModuleList":
        holder = nn.Module()
        kids = [(n, materialize(c, source)) for n, c in step.children if n != "between"]
        holder.layers = nn.ModuleList([m for _, m in kids])
        targets = {n: f"layers.{n}" for n, _ in kids}
        if any(n == "between" for n, _ in step.children):
            between = dict(step.children)["between"]
            holder.between = materialize(between, source)
            if any(True for _ in holder.between.parameters()):
                msg = "'between' is applied after every layer and must have no parameters"
                raise SpecValidationError(
                    [source.error(between.node.path, msg, notes=between.node.notes)]
                )
            targets["between"] = "between"
        return _graph_module(step, holder, targets, ["x"], "ModuleList")
    if step.kind == "ModuleDict":
        holder = nn.Module()
        holder.layers = nn.ModuleDict(
            OrderedDict((n, materialize(c, source)) for n, c in step.children)
        )
        return _graph_module(
            step, holder, {n: f"layers.{n}" for n, _ in step.children}, ["x"], "ModuleDict"
        )
    if step.kind == "Graph":
        holder = nn.Module()
        for name, child in step.children:
            holder.add_module(name, materialize(child, source))
        inputs = list(getattr(step.node, "inputs", ("input",)))
        return _graph_module(step, holder, {n: n for n, _ in step.children}, inputs, "Graph")
    return _layer(step, source)


def build_module(
    spec: Spec, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Shape-check ``spec`` and build its model on ``device`` (``"meta"`` allocates nothing)."""
    plan = infer(spec)
    context = torch.device(device) if device is not None else nullcontext()
    with context:
        model = materialize(plan, spec.source)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model
