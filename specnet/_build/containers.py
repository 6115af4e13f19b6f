"""The containers a build makes: ``Sequential`` and the ``ModuleList`` spec's modules.

A child called through ``Module.__call__`` goes through ``_wrapped_call_impl``
and ``_call_impl`` before its ``forward``: two Python frames and a dozen checks
that, when no hook is registered, end in ``forward(x)`` anyway. For a network
of small layers at batch 1 this is a tenth of the time, and most of what sets a
spec apart from a hand-written ``forward`` that calls ``F.relu`` where the spec
has a ``ReLU`` module. So these containers call a child's ``forward`` directly
exactly when ``_call_impl`` itself would go straight to it: the child has no
hooks and no ``Module.compile()``, no global module hook is registered, nothing
traces or profiles (``torch.jit.trace``, ``torch.fx``, ``torch.compile``,
``torch.profiler``) and ``__call__`` and ``_call_impl`` are torch's own.
Otherwise they call the child as usual, so hooks, tracers, profilers and
compilers see every call. Under ``torch.jit.script`` the plain loop is compiled.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch._jit_internal import is_scripting  # what torch.jit.is_scripting is
from torch.nn.modules import module as _module

__all__ = [
    "LayerList",
    "LayerListBetween",
    "Sequential",
    "attach",
    "chain",
    "container_attributes",
    "direct_calls",
]

_CALL = nn.Module._wrapped_call_impl
"""What torch's ``Module.__call__`` is (fx, for one, replaces ``__call__`` while it traces)."""
_CALL_IMPL = nn.Module._call_impl


def direct_calls() -> bool:
    """Whether nothing global could observe a child's ``forward`` called directly."""
    return not (
        _module._global_forward_pre_hooks
        or _module._global_forward_hooks
        or _module._global_backward_pre_hooks
        or _module._global_backward_hooks
        or torch._C._get_tracing_state()
        or torch.compiler.is_compiling()
        or torch._C._autograd._profiler_enabled()  # its Python tracer finds modules by __call__
    )


def chain(modules: Iterable[nn.Module | None], x: Any) -> Any:
    """``x = module(x)`` for each module, through ``forward`` alone when nothing runs around it.

    Only valid where :func:`direct_calls` holds.
    """
    for module in modules:
        if (
            module._forward_pre_hooks  # type: ignore[union-attr]
            or module._forward_hooks  # type: ignore[union-attr]
            or module._backward_pre_hooks  # type: ignore[union-attr]
            or module._backward_hooks  # type: ignore[union-attr]
            or module._compiled_call_impl is not None  # type: ignore[union-attr]
            or type(module).__call__ is not _CALL
            or type(module)._call_impl is not _CALL_IMPL  # type: ignore[union-attr]
            or "_call_impl" in module.__dict__
        ):
            x = module(x)  # type: ignore[misc]
        else:
            x = module.forward(x)  # type: ignore[union-attr]
    return x


def attach(parent: nn.Module, children: list[tuple[str, nn.Module]]) -> None:
    """``parent.add_module(name, child)`` for each, for names already checked.

    ``add_module`` checks the name (a string, no ``.``, not an attribute
    ``parent`` has: the compiler has checked these) and runs the global module
    registration hooks; with none registered, what is left is the insertion.
    """
    if getattr(_module, "_global_module_registration_hooks", None):
        for name, child in children:
            parent.add_module(name, child)
    else:
        parent._modules.update(children)


class _DirectCalls(nn.Module):
    """``forward`` runs ``_direct`` where :func:`direct_calls` allows, ``_loop`` elsewhere."""

    def forward(self, input: Tensor) -> Tensor:  # nn.Sequential's name for it
        if not is_scripting():  # noqa: SIM102 - TorchScript skips only this exact test
            if direct_calls():
                out: Tensor = self._direct(input)
                return out
        return self._loop(input)

    def _loop(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.jit.unused
    def _direct(self, x: Any) -> Any:
        raise NotImplementedError


class Sequential(_DirectCalls, nn.Sequential):
    """``nn.Sequential`` (same children, methods and ``state_dict``) with a faster ``forward``.

    Children are looked up at each call, so ``append``, ``insert``, ``del`` and
    replacing a child behave as in ``nn.Sequential``.
    """

    def _loop(self, x: Tensor) -> Tensor:
        for module in self:
            x = module(x)
        return x

    @torch.jit.unused
    def _direct(self, x: Any) -> Any:
        return chain(self._modules.values(), x)


class LayerList(_DirectCalls):
    """A ``ModuleList`` spec: ``.layers`` (an ``nn.ModuleList``) applied in order."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def _loop(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.jit.unused
    def _direct(self, x: Any) -> Any:
        return chain(self.layers._modules.values(), x)


class LayerListBetween(_DirectCalls):
    """A ``ModuleList`` spec with ``between``: ``x = between(layer(x))`` for each layer."""

    def __init__(self, layers: list[nn.Module], between: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.between = between

    def _loop(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = self.between(layer(x))
        return x

    @torch.jit.unused
    def _direct(self, x: Any) -> Any:
        between = self.between
        for layer in self.layers:
            x = chain((layer, between), x)
        return x


@functools.cache
def container_attributes() -> dict[str, frozenset[str]]:
    """Names an instance of each named container already has: a child may not take them.

    Keyed by the spec's container kind, for the classes a build makes (a
    ModuleList spec's children sit in an ``nn.ModuleList``, under numbers).
    """
    from .codegen import GeneratedModule

    kinds: dict[str, nn.Module] = {
        "Sequential": Sequential(),
        "ModuleDict": nn.ModuleDict(),
        "Graph": GeneratedModule(),
    }
    return {kind: frozenset(dir(module)) for kind, module in kinds.items()}
