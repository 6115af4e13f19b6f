"""Plan -> ``nn.Module`` tree.

``Sequential`` becomes ``nn.Sequential``; ``ModuleList`` a module holding an
``nn.ModuleList`` as ``.layers`` with the loop a hand-written forward has;
``ModuleDict`` and ``Graph`` modules whose ``forward`` is generated straight-line
code (``_codegen``), so a built graph runs as fast as a hand-written ``forward``
and works with ``torch.compile`` and ``torch.jit.script``. Submodule names are the
spec's names, so ``state_dict()`` keys are the ones a hand-written module with
those attribute names has.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ._codegen import Call, module_class
from ._errors import SpecError, SpecValidationError
from ._infer import Step, infer
from ._registry import layers
from ._source import SourceMap
from ._spec import Spec

__all__ = ["LayerList", "LayerListBetween", "build_module", "materialize"]

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


class LayerList(nn.Module):
    """A ``ModuleList`` spec: ``.layers`` (an ``nn.ModuleList``) applied in order."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x


class LayerListBetween(nn.Module):
    """A ``ModuleList`` spec with ``between``: ``x = between(layer(x))`` for each layer."""

    def __init__(self, layers: list[nn.Module], between: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.between = between

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = self.between(layer(x))
        return x


def _module_list(step: Step, source: SourceMap) -> nn.Module:
    kids = [materialize(c, source) for n, c in step.children if n != "between"]
    if not any(n == "between" for n, _ in step.children):
        return LayerList(kids)
    plan = dict(step.children)["between"]
    between = materialize(plan, source)
    if any(True for _ in between.parameters()):
        msg = "'between' is applied after every layer and must have no parameters"
        raise SpecValidationError([source.error(plan.node.path, msg, notes=plan.node.notes)])
    return LayerListBetween(kids, between)


def _calls(step: Step, first: str) -> list[Call]:
    kinds = dict(step.children)
    out: list[Call] = []
    prev = first
    for name, refs in step.calls:
        child = kinds[name]
        out.append((name, child.kind, refs or (prev,), child.args))
        prev = name
    return out


def _module_dict(step: Step, source: SourceMap) -> nn.Module:
    cls, _ = module_class(
        "ModuleDict", ["x"], _calls(step, "x"), [step.calls[-1][0]], False, "layers"
    )
    module = cls()
    module.layers = nn.ModuleDict(
        OrderedDict((n, materialize(c, source)) for n, c in step.children)
    )
    return module


def _graph(step: Step, source: SourceMap) -> nn.Module:
    inputs = list(getattr(step.node, "inputs", ("input",)))
    calls = _calls(step, inputs[0])
    cls, used = module_class("Graph", inputs, calls, step.outputs, step.tuple_output)
    module = cls()
    for name, child in step.children:
        if name in used:
            module.add_module(name, materialize(child, source))
    return module


def materialize(step: Step, source: SourceMap) -> nn.Module:
    """Build the module a plan describes (parameters initialised as torch does)."""
    _check_names(step, source)
    if step.kind == "Sequential":
        named = [(name, materialize(child, source)) for name, child in step.children]
        return nn.Sequential(OrderedDict(named))
    if step.kind == "ModuleList":
        return _module_list(step, source)
    if step.kind == "ModuleDict":
        return _module_dict(step, source)
    if step.kind == "Graph":
        return _graph(step, source)
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
