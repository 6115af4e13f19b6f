"""The modules a build makes for the four container kinds, from torch's public API.

A ``Sequential`` is an ``nn.Sequential``; a ``ModuleList`` a module holding an
``nn.ModuleList`` as ``.layers`` (and a parameter-free ``.between``); a
``ModuleDict`` one holding an ``nn.ModuleDict`` as ``.layers``; a ``Graph`` one
holding its layers as attributes (and its Parameters and Buffers as its own tensors). The last three run generated code
(:mod:`.codegen`), and every child is called as torch calls modules (through
``__call__``), so hooks, tracers, profilers and compilers see each call.
Submodule names are the spec's, so ``state_dict()`` keys are those of a
hand-written module with the same attribute names.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from specnet._front.infer import Step

from .codegen import Forward, GeneratedModule, forward_source, module_class
from .ops import Held

__all__ = ["BUILDERS", "Build", "container_attributes", "module"]

Build = Callable[[Step], "nn.Module | Held"]
"""Builds a child's module (the compiler's recursion); a graph's Parameter is a
:class:`~specnet._build.ops.Held` tensor."""


def module(made: nn.Module | Held) -> nn.Module:
    """A built child that is a module: shape inference lets only a Graph hold tensors."""
    assert isinstance(made, nn.Module), f"{type(made).__name__} outside a Graph"
    return made


def _generated(step: Step) -> tuple[GeneratedModule, Forward]:
    forward = forward_source(step)
    assert forward is not None, f"a {step.kind} has no generated forward"
    return module_class(forward)(), forward


def _sequential(step: Step, build: Build) -> nn.Module:
    return nn.Sequential(OrderedDict((name, module(build(child))) for name, child in step.children))


def _module_list(step: Step, build: Build) -> nn.Module:
    built, _ = _generated(step)
    built.layers = nn.ModuleList(module(build(child)) for _, child in step.children)
    if step.between is not None:  # validation has checked that it holds no parameters
        built.between = module(build(step.between))
    return built


def _module_dict(step: Step, build: Build) -> nn.Module:
    built, _ = _generated(step)
    built.layers = nn.ModuleDict({name: module(build(child)) for name, child in step.children})
    return built


def _graph(step: Step, build: Build) -> nn.Module:
    built, forward = _generated(step)
    for name, child in step.children:
        if name in forward.inlined:
            continue
        made = build(child)
        if isinstance(made, Held):
            made.attach(built, name)
        else:
            built.add_module(name, made)
    return built


BUILDERS: dict[str, Callable[[Step, Build], nn.Module]] = {
    "Sequential": _sequential,
    "ModuleList": _module_list,
    "ModuleDict": _module_dict,
    "Graph": _graph,
}
"""The module of each container kind, from its plan (a layer's is the compiler's)."""


@functools.cache
def container_attributes() -> dict[str, frozenset[str]]:
    """Names an instance of each named container already has: a child may not take them.

    Keyed by the spec's container kind, for the classes a build makes (a
    ModuleList spec's children sit in an ``nn.ModuleList``, under numbers; a
    ModuleDict spec's in an ``nn.ModuleDict``).
    """
    kinds: dict[str, nn.Module] = {
        "Sequential": nn.Sequential(),
        "ModuleDict": nn.ModuleDict(),
        "Graph": GeneratedModule(),
    }
    return {kind: frozenset(dir(module)) for kind, module in kinds.items()}
