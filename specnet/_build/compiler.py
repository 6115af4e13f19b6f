"""Plan -> ``nn.Module`` tree.

A layer is its registered class called with the plan's arguments, once they are
bound to the installed class's signature: where specnet's catalog and the
installed torch disagree about an argument, the build stops with a located error
that names it, not with a ``TypeError`` from inside torch. Containers are built
by :data:`.containers.BUILDERS`, one entry per kind.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from specnet._front.errors import ErrorItem, Path, SpecError, SpecValidationError
from specnet._front.infer import Step, infer
from specnet._front.registry import catalog, layers, name_taken
from specnet._front.source import SourceMap
from specnet._front.spec import Layer, Spec

from .containers import BUILDERS, container_attributes, module
from .ops import Held

__all__ = ["build_module", "class_name", "materialize", "signature"]

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_ANY = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@functools.cache
def signature(cls: type) -> inspect.Signature:
    """The constructor signature of the installed class (read once per class)."""
    return inspect.signature(cls)


@functools.cache
def _binds(cls: type, names: tuple[str, ...]) -> bool:
    """Whether the class's signature takes arguments of these names (all it depends on)."""
    try:
        signature(cls).bind(**dict.fromkeys(names))
    except TypeError:
        return False
    return True


def class_name(cls: type) -> str:
    """``torch.nn.Conv2d`` for torch's layers; ``module.Class`` for any other class."""
    if getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _at(step: Step, arg: str) -> Path:
    """Where the spec gives ``arg``; the layer itself for an inferred argument."""
    node = step.node
    return (*node.path, arg) if isinstance(node, Layer) and arg in node.args else node.path


def _drift(step: Step, cls: type, args: Mapping[str, Any], source: SourceMap) -> list[ErrorItem]:
    """The errors for arguments that the installed class's signature does not bind."""
    params = signature(cls).parameters
    if layers()[step.kind].kind == "layer":
        who = f"the installed torch {torch.__version__}'s {step.kind}"
        notes = (*step.node.notes, f"specnet's layer catalog describes torch {catalog()['torch']}")
    else:
        who, notes = class_name(cls), step.node.notes
    any_name = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # Exactly what makes ``bind`` fail: a name it has no place for, a required one missing.
    items = [
        source.error(_at(step, arg), f"{who} does not take '{arg}'", notes=notes)
        for arg in args
        if not any_name and (arg not in params or params[arg].kind not in _NAMED)
    ]
    items += [
        source.error(
            step.node.path, f"{who} requires '{p.name}', which specnet does not give", notes=notes
        )
        for p in params.values()
        if p.default is inspect.Parameter.empty and p.kind not in _ANY and p.name not in args
    ]
    return items


def _ctor_value(value: Any, source: SourceMap) -> Any:
    if isinstance(value, Step):
        return materialize(value, source)
    if isinstance(value, list):
        return tuple(value)
    return value


def _layer(step: Step, source: SourceMap) -> nn.Module | Held:
    cls = layers()[step.kind].build_target()
    if not _binds(cls, tuple(step.args)):
        raise SpecValidationError(_drift(step, cls, step.args, source))
    kwargs = {k: _ctor_value(v, source) for k, v in step.args.items()}
    try:
        made: nn.Module | Held = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        if isinstance(exc, SpecError):
            raise
        msg = f"{class_name(cls)} refused these arguments: {exc}"
        raise SpecValidationError(
            [source.error(step.node.path, msg, notes=step.node.notes)]
        ) from None
    return made


def _check_names(step: Step, source: SourceMap) -> None:
    # Validation refuses these names too, from the catalog; this is the installed torch's word.
    taken = container_attributes().get(step.kind, frozenset())
    for name, child in step.children:
        if name in taken:
            msg = name_taken(step.kind, name)
            raise SpecValidationError([source.error(child.node.path, msg, key=True)])


def materialize(step: Step, source: SourceMap) -> nn.Module | Held:
    """Build the module a plan describes (parameters initialised as torch does); a graph's
    Parameter or Buffer is the tensor its graph's module registers."""
    build = BUILDERS.get(step.kind)
    if build is None:
        return _layer(step, source)
    _check_names(step, source)
    return build(step, functools.partial(materialize, source=source))


def build_module(
    spec: Spec, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Shape-check ``spec`` and build its model on ``device`` (``"meta"`` allocates nothing)."""
    plan = infer(spec)
    context = torch.device(device) if device is not None else nullcontext()
    with context:
        model = module(materialize(plan, spec.source))
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model
