"""Plan -> ``nn.Module`` tree.

``Sequential`` becomes an ``nn.Sequential`` (``_containers.Sequential``, which
calls unhooked children's ``forward`` directly); ``ModuleList`` a module holding an
``nn.ModuleList`` as ``.layers`` with the loop a hand-written forward has;
``ModuleDict`` and ``Graph`` modules whose ``forward`` is generated straight-line
code (``_codegen``), so a built graph runs as fast as a hand-written ``forward``
and works with ``torch.compile`` and ``torch.jit.script``. Submodule names are the
spec's names, so ``state_dict()`` keys are the ones a hand-written module with
those attribute names has.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from .codegen import Call, module_class
from .containers import (
    LayerList,
    LayerListBetween,
    Sequential,
    attach,
    container_attributes,
)
from specnet._front.errors import SpecError, SpecValidationError
from specnet._front.infer import Step, infer
from specnet._front.registry import layers, name_taken
from specnet._front.source import SourceMap
from specnet._front.spec import Spec

__all__ = ["build_module", "materialize"]


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
    # Validation refuses these names too, from the catalog; this is the installed torch's word.
    taken = container_attributes().get(step.kind, frozenset())
    for name, child in step.children:
        if name in taken:
            msg = name_taken(step.kind, name)
            raise SpecValidationError([source.error(child.node.path, msg, key=True)])


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
    module.layers = nn.ModuleDict()
    attach(module.layers, [(n, materialize(c, source)) for n, c in step.children])
    return module


def _graph(step: Step, source: SourceMap) -> nn.Module:
    inputs = list(getattr(step.node, "inputs", ("input",)))
    calls = _calls(step, inputs[0])
    cls, used = module_class("Graph", inputs, calls, step.outputs, step.tuple_output)
    module = cls()
    attach(module, [(n, materialize(c, source)) for n, c in step.children if n in used])
    return module


def materialize(step: Step, source: SourceMap) -> nn.Module:
    """Build the module a plan describes (parameters initialised as torch does)."""
    _check_names(step, source)
    if step.kind == "Sequential":
        sequential = Sequential()
        attach(sequential, [(name, materialize(child, source)) for name, child in step.children])
        return sequential
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
