"""The source of ``forward`` for the containers that need one, built or exported.

A ``Graph`` or ``ModuleDict`` runs straight-line Python, one statement per layer,
as a hand-written ``forward`` would: no interpreter loop over a dict of nodes.
specnet's ops are written inline (``a + b``, ``torch.cat([a, b], dim=1)``, ``qkv[0]``;
:data:`~specnet._build.ops.INLINE`), a tensor the graph holds is read as ``self.name``,
keyword arguments (``call:``) are passed by name, and the nodes only ``train_output``
needs run in a closing ``if self.training:`` block. A ``ModuleList`` runs the loop a hand-written
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
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn

from specnet._front.infer import Step
from specnet._front.registry import layers
from specnet._front.spec import Graph, NodeRef

from .ops import INLINE, Held

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
    "Union": (0, "typing", "Union"),
    "torch": (1, "torch", ""),
    "Tensor": (1, "torch", "Tensor"),
    "nn": (1, "torch", "nn"),
    "F": (1, "torch.nn", "functional as F"),
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
    var = name if name.isidentifier() else "v_" + re.sub(r"\W", "_", name)
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
    """One statement per call; ``child`` writes the expression of a child module by name.

    A tensor the module holds (a Parameter) is read where it is used (``self.class_token``);
    the statements only ``train_output`` needs run in an ``if self.training:`` block that
    returns it.
    """
    var: dict[Hashable, str] = {
        key: child(name) for key, name, plan, _ in statements if _held(plan)
    }
    run = [s for s in statements if s[0] not in var]
    reads = {key: _reads(refs, plan) for key, _, plan, refs in run}
    training = _needed(step.train_outputs, reads) - _needed(outputs, reads)
    blocks = (
        ([s for s in run if s[0] not in training], outputs, step.tuple_output),
        ([s for s in run if s[0] in training], step.train_outputs, step.train_tuple),
    )
    uses = Counter(r for key in reads for r in reads[key])
    uses.update(outputs)
    uses.update(step.train_outputs)
    taken: set[str] = set()
    var.update({name: _variable(name, taken) for name, _ in inputs})
    chained = {key for block in blocks for key in _chained(*block, reads, uses)}
    for key, name, _, _ in run:
        if key not in chained:
            var[key] = _variable(name, taken)
    # The chain's variable: ``x``, which may be the input that only the first statement reads.
    first = reads[run[0][0]] if run else ()
    if any(var[n] == "x" and uses[n] == 1 and n in first for n, _ in inputs):
        temporary = "x"
    else:
        temporary = _variable("out" if "x" in taken else "x", taken) if chained else ""
    lines: list[list[str]] = [[], []]
    inlined: set[str] = set()
    made = {key: plan for key, _, plan, _ in statements}
    for (block, _, _), body in zip(blocks, lines, strict=True):
        for key, name, plan, refs in block:
            xs = [var[r] for r in refs]
            inline = INLINE.get(plan.kind)
            if inline is not None:
                expr = inline(layers()[plan.kind].with_defaults(plan.args), xs, plan.inputs)
                inlined.add(name)
            else:
                kw = [f"{k}={_keyword(v, var)}" for k, v in plan.keywords.items()]
                expr = f"{child(name)}({', '.join([*xs, *kw])})"
            if key in chained:
                var[key] = temporary
            if _in_place(plan, refs, made, uses):  # the sum lives where its first input was
                var[key] = xs[0]
                body.append(f"{xs[0]} += {xs[1]}")
            else:
                body.append(f"{var[key]} = {expr}")
    code = [f"    def forward(self, {_parameters(inputs, var)}) -> {_returns(step)}:"]
    code += [f"        {line}" for line in lines[0]]
    if step.train_output is not None:
        code.append("        if self.training:")
        code += [f"            {line}" for line in lines[1]]
        code.append(f"            return {_result(step.train_outputs, step.train_tuple, var)}")
    code.append(f"        return {_result(outputs, step.tuple_output, var)}")
    return Forward(class_name, "\n".join(code) + "\n", frozenset(inlined))


def _held(plan: Step) -> bool:
    """Whether the plan is a tensor its graph's module holds (a Parameter, a Buffer)."""
    t = layers().get(plan.kind)  # None for a container
    target = t.build_target() if t is not None else None
    return isinstance(target, type) and issubclass(target, Held)


def _reads(refs: tuple[Hashable, ...], plan: Step) -> tuple[Hashable, ...]:
    """The values a statement reads: its inputs, then its keyword tensors."""
    return (*refs, *(v.name for v in plan.keywords.values() if isinstance(v, NodeRef)))


def _needed(
    outputs: tuple[Hashable, ...], reads: dict[Hashable, tuple[Hashable, ...]]
) -> set[Hashable]:
    """The statements ``outputs`` need, directly or through others."""
    needed: set[Hashable] = set()
    stack = [o for o in outputs if o in reads]
    while stack:
        key = stack.pop()
        if key not in needed:
            needed.add(key)
            stack.extend(r for r in reads[key] if r in reads)
    return needed


def _chained(
    block: Sequence[Statement],
    outputs: tuple[Hashable, ...],
    tuple_output: bool,
    reads: dict[Hashable, tuple[Hashable, ...]],
    uses: Counter[Hashable],
) -> set[Hashable]:
    """The values only the next statement of their block reads, as an input (or its
    return, but for a tuple: ``return cat, res`` reads best by name): they live in one
    reused variable."""
    if not block:
        return set()
    # (a keyword argument reads best by name too: ``attn_mask=mask``)
    following = [refs for *_, refs in block[1:]] + [() if tuple_output else outputs]
    return {
        key
        for (key, *_), after in zip(block, following, strict=True)
        if uses[key] == 1 and key in after
    }


def _keyword(value: Any, var: dict[Hashable, str]) -> str:
    """A keyword argument of a call: a graph value by its variable, or a constant."""
    if isinstance(value, NodeRef):
        return var[value.name]
    return string(value) if isinstance(value, str) else repr(value)


def _parameters(inputs: Sequence[tuple[str, Any]], var: dict[Hashable, str]) -> str:
    return ", ".join(f"{var[name]}: {_annotation(value)}" for name, value in inputs)


def _result(outputs: tuple[Hashable, ...], tuple_output: bool, var: dict[Hashable, str]) -> str:
    outs = [var[o] for o in outputs]
    if not tuple_output:
        return outs[0]
    return f"({outs[0]},)" if len(outs) == 1 else ", ".join(outs)


def _returns(step: Step) -> str:
    """The return annotation: eval's value, or either value where training returns another."""
    eval_type = _annotation(step.output)
    if step.train_output is None:
        return eval_type
    train_type = _annotation(step.train_output)
    return eval_type if train_type == eval_type else f"Union[{eval_type}, {train_type}]"


def _in_place(
    plan: Step, refs: tuple[Hashable, ...], made: dict[Hashable, Step], uses: Counter[Hashable]
) -> bool:
    """Whether an ``Add`` of two values may write into the first, as hand-written code does
    (``out += identity``): nothing else reads it, it is a new tensor that its layer's backward
    never reads (:attr:`~specnet._front.rules.base.Rule.fresh`), and the sum has its shape
    and dtype (no broadcasting over it, no type promotion)."""
    if plan.kind != "Add" or len(refs) != 2 or refs[0] not in made or uses[refs[0]] != 1:
        return False
    first = made[refs[0]]
    reg = layers()
    if first.kind not in reg:  # a container's output may be anything (its input, a view)
        return False
    rule = reg[first.kind].rule
    return rule is not None and rule.fresh and first.output == plan.output


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
            "F": torch.nn.functional,
            "Union": Union,
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
