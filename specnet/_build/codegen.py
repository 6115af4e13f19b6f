"""The source of ``forward`` for the containers that need one, built or exported.

A ``Graph`` or ``ModuleDict`` runs straight-line Python, one statement per layer,
as a hand-written ``forward`` would: no interpreter loop over a dict of nodes.
specnet's multi-input ops are written inline (``a + b``, ``torch.cat([a, b], dim=1)``;
:data:`~specnet._build.ops.INLINE`). A ``ModuleList`` runs the loop a hand-written
one has. A value that only the next statement reads lives in one reused variable
(``x = self.bn1(x)``), so intermediate tensors are freed when hand-written code frees
them; a value read later (a skip connection) keeps its node's name.

The same text is the ``forward`` of a built module (:func:`module_class`: compiled
once per distinct code, so the eight blocks of a ResNet-18 make two classes, and
registered with :mod:`linecache`, so tracebacks show it and ``torch.jit.script`` can
read it; ``GeneratedModule.code`` holds it) and of the class that ``specnet export
--format python`` writes. It is made only from validated names (letters, digits,
``_``), literals and fixed templates: nothing from a spec is ever evaluated.
"""

from __future__ import annotations

import keyword
import linecache
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from specnet._front.infer import Step
from specnet._front.registry import layers
from specnet._front.spec import Graph

from .ops import INLINE

__all__ = [
    "IMPORTS",
    "Forward",
    "GeneratedModule",
    "forward_source",
    "module_class",
    "string",
]

IMPORTS: dict[str, tuple[int, str, str]] = {
    "math": (0, "math", ""),
    "OrderedDict": (0, "collections", "OrderedDict"),
    "Any": (0, "typing", "Any"),
    "Optional": (0, "typing", "Optional"),
    "torch": (1, "torch", ""),
    "Tensor": (1, "torch", "Tensor"),
    "nn": (1, "torch", "nn"),
}
"""The global names generated and exported code may read, each with where an exported
file imports it from: (isort section, module, the name imported from it or "")."""

_RESERVED = frozenset({"self", "layer", *IMPORTS})
"""Names no variable of generated code may take."""


@dataclass(frozen=True)
class Forward:
    """The ``forward`` of one container's class."""

    class_name: str
    code: str
    """``def forward(...)`` with its body, indented as a method."""
    inlined: frozenset[str]
    """Children the code writes as expressions: the module holds no module for them."""


def string(text: str) -> str:
    """A Python literal for ``text``, in double quotes where that needs no escapes."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        return f'"{literal[1:-1]}"'
    return literal


def _variable(name: str, taken: set[str]) -> str:
    """A fresh variable for a spec name: the name itself where Python allows it."""
    var = name if name.isidentifier() else f"v_{name}"
    while keyword.iskeyword(var) or var in _RESERVED or var in taken:
        var += "_"
    taken.add(var)
    return var


def _attribute(name: str) -> str:
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"self.{name}"
    return f"getattr(self, {string(name)})"


def _annotation(value: Any) -> str:
    """The type of a plan value: a tensor, or a tuple of values (an LSTM's output)."""
    if isinstance(value, tuple):
        return "tuple[" + ", ".join(_annotation(v) for v in value) + "]"
    return "Tensor"


Statement = tuple[Hashable, str, Step, tuple[Hashable, ...]]
"""(the value it makes, the child it calls, the child's plan, the values it reads)."""


def _straight_line(
    class_name: str,
    inputs: Sequence[tuple[str, Any]],
    statements: Sequence[Statement],
    outputs: tuple[Hashable, ...],
    step: Step,
    child: Callable[[str], str],
) -> Forward:
    """One statement per call; ``child`` writes the expression of a child module by name."""
    uses = Counter(r for *_, refs in statements for r in refs)
    uses.update(outputs)
    taken: set[str] = set()
    var: dict[Hashable, str] = {name: _variable(name, taken) for name, _ in inputs}
    # A tuple returned reads best by name: ``return cat, res``.
    following = [refs for *_, refs in statements[1:]] + [() if step.tuple_output else outputs]
    chained = {
        key
        for (key, *_), after in zip(statements, following, strict=True)
        if uses[key] == 1 and key in after
    }
    for key, name, _, _ in statements:
        if key not in chained:
            var[key] = _variable(name, taken)
    # The chain's variable: ``x``, which may be the input that only the first statement reads.
    first = statements[0][3] if statements else ()
    if any(var[n] == "x" and uses[n] == 1 and n in first for n, _ in inputs):
        temporary = "x"
    else:
        temporary = _variable("out" if "x" in taken else "x", taken) if chained else ""
    body: list[str] = []
    inlined: set[str] = set()
    for key, name, plan, refs in statements:
        xs = [var[r] for r in refs]
        inline = INLINE.get(plan.kind)
        if inline is not None:
            expr = inline(layers()[plan.kind].with_defaults(plan.args), xs)
            inlined.add(name)
        else:
            expr = f"{child(name)}({', '.join(xs)})"
        if key in chained:
            var[key] = temporary
        body.append(f"        {var[key]} = {expr}")
    outs = [var[o] for o in outputs]
    if not step.tuple_output:
        result = outs[0]
    elif len(outs) == 1:
        result = f"({outs[0]},)"
    else:
        result = ", ".join(outs)
    params = ", ".join(f"{var[name]}: {_annotation(value)}" for name, value in inputs)
    code = (
        f"    def forward(self, {params}) -> {_annotation(step.output)}:\n"
        + "".join(f"{line}\n" for line in body)
        + f"        return {result}\n"
    )
    return Forward(class_name, code, frozenset(inlined))


def _graph(step: Step) -> Forward:
    node = step.node
    assert isinstance(node, Graph)
    plans = dict(step.children)
    statements = [(name, name, plans[name], refs) for name, refs in step.calls]
    inputs = list(zip(node.inputs, step.inputs, strict=True))
    return _straight_line("Graph", inputs, statements, step.outputs, step, _attribute)


def _module_dict(step: Step) -> Forward:
    plans = dict(step.children)
    # A name may repeat (a reused layer): the values are the statements, by position.
    statements: list[Statement] = []
    value: Hashable = "x"
    for i, (name, _) in enumerate(step.calls):
        statements.append((i, name, plans[name], (value,)))
        value = i
    inputs = [("x", step.inputs[0])]
    return _straight_line(
        "LayerDict", inputs, statements, (value,), step, lambda n: f"self.layers[{string(n)}]"
    )


def _module_list(step: Step) -> Forward:
    call = "layer(x)" if step.between is None else "self.between(layer(x))"
    code = (
        f"    def forward(self, x: {_annotation(step.inputs[0])}) -> {_annotation(step.output)}:\n"
        "        for layer in self.layers:\n"
        f"            x = {call}\n"
        "        return x\n"
    )
    return Forward("LayerList", code, frozenset())


_WRITERS: dict[str, Callable[[Step], Forward]] = {
    "Graph": _graph,
    "ModuleDict": _module_dict,
    "ModuleList": _module_list,
}
"""The containers with a ``forward`` of their own (a ``Sequential`` runs nn.Sequential's)."""


def forward_source(step: Step) -> Forward | None:
    """The ``forward`` of the class ``step``'s container needs; ``None`` for the others."""
    write = _WRITERS.get(step.kind)
    return None if write is None else write(step)


class GeneratedModule(nn.Module):
    """Base of the built containers with a generated ``forward``; ``code`` is its source."""

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
        namespace: dict[str, Any] = {
            "GeneratedModule": GeneratedModule,
            "torch": torch,
            "Tensor": Tensor,
        }
        exec(compile(source, filename, "exec"), namespace)
        cls = namespace[name]
        cls.code = code
        cls.__module__ = __name__
        _CLASSES[key] = cls
    return cls


def module_class(forward: Forward) -> type[GeneratedModule]:
    """The class whose ``forward`` is ``forward``'s code (one per distinct code)."""
    return _compile_class(forward.class_name, forward.code)
