"""Generated ``forward`` code for ``Graph`` and ``ModuleDict`` containers.

A container's call order becomes straight-line Python, one statement per
layer, exactly what a hand-written ``forward`` would say: no interpreter loop
over a dict of nodes. specnet's multi-input ops are written inline (``a + b``,
``torch.cat([a, b], 1)``), as hand-written code does. The class for a given
structure is generated once and cached, so building the same architecture again
(or the eight blocks of a ResNet) costs no code generation.

The source is registered with :mod:`linecache`, so tracebacks show it and
``torch.jit.script`` can read it; ``GeneratedModule.code`` holds it. The text is
made only from validated names (letters, digits, ``_``), ``repr`` of numbers and
fixed templates: nothing from a spec is ever evaluated.
"""

from __future__ import annotations

import keyword
import linecache
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Call", "GeneratedModule", "module_class"]

Call = tuple[str, str, tuple[str, ...], dict[str, Any]]
"""(child name, layer type, input names, arguments) of one statement."""


class GeneratedModule(nn.Module):
    """Base of generated containers; ``code`` is the source of ``forward``."""

    code: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Generated classes live in no importable module: pickle by source.
        return (_restore, (type(self).__name__, self.code, self.__dict__.copy()))


def _restore(name: str, code: str, state: dict[str, Any]) -> GeneratedModule:
    cls = _compile_class(name, code)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


_CLASSES: dict[tuple[str, str], type[GeneratedModule]] = {}


def _compile_class(name: str, code: str) -> type[GeneratedModule]:
    key = (name, code)
    cls = _CLASSES.get(key)
    if cls is None:
        filename = f"<specnet generated {name} #{len(_CLASSES)}>"
        source = f"class {name}(GeneratedModule):\n{code}"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = {"GeneratedModule": GeneratedModule, "torch": torch}
        exec(compile(source, filename, "exec"), namespace)
        cls = namespace[name]
        cls.code = code
        cls.__module__ = __name__
        _CLASSES[key] = cls
    return cls


def _attr(container: str, name: str) -> str:
    if container:
        return f"self.{container}[{name!r}]"
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"self.{name}"
    return f"getattr(self, {name!r})"


def _inline(kind: str, args: dict[str, Any], xs: Sequence[str]) -> str | None:
    """specnet's multi-input ops as expressions, as a hand-written forward has them."""
    if kind == "Add":
        return " + ".join(xs)
    if kind == "Mul":
        return " * ".join(xs)
    if kind == "Concat":
        return f"torch.cat([{', '.join(xs)}], {int(args.get('dim', 1))!r})"
    return None


def module_class(
    name: str,
    inputs: Sequence[str],
    calls: Sequence[Call],
    outputs: Sequence[str],
    tuple_output: bool,
    container: str = "",
) -> tuple[type[GeneratedModule], frozenset[str]]:
    """The class running ``calls`` in order; also the children its code calls.

    ``container`` is the attribute holding the children (``"layers"`` for a
    ModuleDict) or ``""`` when they are attributes of the module itself.
    """
    key = (
        name,
        tuple(inputs),
        # An inlined op's expression (over its input names) is all its arguments decide.
        tuple((c, k, refs, _inline(k, args, refs)) for c, k, refs, args in calls),
        tuple(outputs),
        tuple_output,
        container,
    )
    known = _STRUCTURES.get(key)
    if known is None:
        known = _STRUCTURES[key] = _generate(name, inputs, calls, outputs, tuple_output, container)
    return known


_STRUCTURES: dict[tuple[Any, ...], tuple[type[GeneratedModule], frozenset[str]]] = {}
"""module_class's answers by structure: a model's repeated blocks generate nothing twice."""


def _generate(
    name: str,
    inputs: Sequence[str],
    calls: Sequence[Call],
    outputs: Sequence[str],
    tuple_output: bool,
    container: str,
) -> tuple[type[GeneratedModule], frozenset[str]]:
    local = {n: f"x{i}" for i, n in enumerate(inputs)}
    body: list[str] = []
    used: set[str] = set()
    for i, (child, kind, refs, args) in enumerate(calls):
        xs = [local[r] for r in refs]
        expr = _inline(kind, args, xs)
        if expr is None:
            expr = f"{_attr(container, child)}({', '.join(xs)})"
            used.add(child)
        var = f"v{i}"
        body.append(f"        {var} = {expr}")
        local[child] = var
    outs = [local[o] for o in outputs]
    result = "(" + ", ".join(outs) + ",)" if tuple_output else outs[0]
    params = ", ".join(local[n] for n in inputs)
    code = f"    def forward(self, {params}):\n" + "\n".join(body) + f"\n        return {result}\n"
    return _compile_class(name, code), frozenset(used)
