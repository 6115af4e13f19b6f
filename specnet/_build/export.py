"""Export a spec's model as plain PyTorch source, or as ONNX.

The Python file defines ``Model``, a module with the built model's structure and
attribute names: the built model's ``state_dict()`` loads into it with
``strict=True`` and it computes the same outputs. It is written as a person
would write it: a class for each container that runs a ``forward`` of its own
(graphs, module lists and dicts), whose ``__init__`` creates one layer per line
(arguments in the signature's order, those left at their default omitted) and
whose ``forward`` is the code the built module runs (:mod:`.codegen`); it imports
only what it uses, from torch alone (specnet's own ops are written out as small
classes).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import keyword
import math
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from specnet._front.errors import SpecnetError, SpecValidationError, UsageError
from specnet._front.limits import MAX_EXAMPLE_ELEMENTS
from specnet._front.extras import export_needs, require
from specnet._front.infer import Step, infer
from specnet._front.registry import TypeDef, layers
from specnet._front.source import SourceMap
from specnet._front.spec import Spec

from . import ops
from .codegen import IMPORTS, Forward, forward_source, string
from .compiler import class_name, signature

__all__ = ["export_onnx", "python_source"]

_WIDTH = 100
"""Longest line before a call is broken into one argument per line."""


@dataclass(frozen=True)
class _Call:
    """A bracketed expression, written on one line when it fits, else one item per line."""

    head: str
    """Up to and including the opening bracket: ``nn.Conv2d(``, ``[``."""
    items: tuple[tuple[str, Expr], ...]
    """Each item's prefix (``kernel_size=``, ``"conv1": ``) and value."""
    close: str = ")"


Expr = Union[str, _Call]  # noqa: UP007 - an alias evaluated at runtime


def _flat(expr: Expr) -> str:
    if isinstance(expr, str):
        return expr
    return expr.head + ", ".join(p + _flat(v) for p, v in expr.items) + expr.close


def _render(expr: Expr, indent: str, column: int) -> str:
    """``expr`` starting at ``column`` of a line indented by ``indent``."""
    flat = _flat(expr)
    if isinstance(expr, str) or not expr.items or column + len(flat) <= _WIDTH:
        return flat
    inner = indent + "    "
    comma = "," if len(expr.items) > 1 else ""  # one item per line, or one item alone
    lines = [f"{inner}{p}{_render(v, inner, len(inner) + len(p))}{comma}" for p, v in expr.items]
    return "\n".join([expr.head, *lines, indent + expr.close])


def _statement(text: str, expr: Expr, indent: str = "        ") -> str:
    """``{text}{expr}`` as a line of ``__init__``."""
    return f"{indent}{text}{_render(expr, indent, len(indent) + len(text))}"


def _literal(value: Any) -> str:
    """Python source for a value a spec may hold (lists become tuples, as in a build)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "math.nan" if math.isnan(value) else ("math.inf" if value > 0 else "-math.inf")
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, (list, tuple)):
        items = [_literal(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {value!r}")


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(value, list):
        value = tuple(value)
    return type(value) is type(default) and value == default


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _assign(name: str, expr: Expr) -> str:
    if _identifier(name):
        return _statement(f"self.{name} = ", expr)
    return _statement(f"self.add_module({string(name)}, ", _Call("", (("", expr),)))


def _docstring(text: str) -> str:
    """``text`` for the inside of a docstring: no character of it can end the string."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])  # \n, \x00, \u2028: the escape, on this line
        else:
            out.append(ch)
    return "".join(out)


def _imports(code: str) -> str:
    """The import lines for the names ``code`` reads, in isort's order."""
    used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    sections: list[list[str]] = [[], []]
    froms: dict[tuple[int, str], list[str]] = {}
    for name in sorted(used & set(IMPORTS), key=lambda n: IMPORTS[n][1:]):
        section, module, member = IMPORTS[name]
        if member:
            froms.setdefault((section, module), []).append(member)
        else:
            sections[section].append(f"import {module}")
    for (section, module), members in froms.items():
        sections[section].append(f"from {module} import {', '.join(members)}")
    for lines in sections:
        lines.sort(key=lambda line: (line.startswith("from"), line))
    return "\n\n".join("\n".join(lines) for lines in sections if lines)


@dataclass(frozen=True)
class _Kind:
    """How the export writes one container kind."""

    base: str
    """The class a class for it derives from."""
    init: Callable[[_Writer, Step, Forward | None], list[str]]
    """The lines of that class's ``__init__``."""
    nested: Callable[[_Writer, Step], Expr] | None = None
    """How it is written inside another container; ``None``: an instance of its class."""


class _Writer:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.classes: dict[str, str] = {}
        """Each class written (its text with the name left out) and its name."""
        self.texts: list[str] = []
        self.ops: dict[type, None] = {}
        """specnet's op classes used, whose source the file carries."""
        self.counts: Counter[str] = Counter()

    def expr(self, step: Step) -> Expr:
        """A Python expression constructing ``step``'s module."""
        kind = _KINDS.get(step.kind)
        if kind is None:
            cls, items = self.layer(step)
            return _Call(f"{cls}(", items)
        if kind.nested is not None:
            return kind.nested(self, step)
        forward = forward_source(step)
        assert forward is not None
        body = _class_body(kind.base, kind.init(self, step, forward), forward)
        name = self.classes.get(body)
        if name is None:
            self.counts[forward.class_name] += 1
            name = self.classes[body] = f"{forward.class_name}{self.counts[forward.class_name]}"
            self.texts.append(f"class {name}{body}")
        return f"{name}()"

    def layer(self, step: Step) -> tuple[str, tuple[tuple[str, Expr], ...]]:
        """The class (``nn.Conv2d``) and the arguments of a layer's constructor call."""
        t = layers()[step.kind]
        cls = t.build_target()
        if cls.__module__ == ops.__name__:
            self.ops[cls] = None
            written = cls.__name__
        elif class_name(cls) == f"torch.nn.{cls.__name__}":
            written = f"nn.{cls.__name__}"
        else:
            msg = f"{step.kind} is a layer registered from Python ({class_name(cls)}); its source cannot be exported"
            raise SpecValidationError([self.source.error(step.node.path, msg)])
        return written, self.arguments(t, cls, step.args)

    def arguments(
        self, t: TypeDef, cls: type, args: Mapping[str, Any]
    ) -> tuple[tuple[str, Expr], ...]:
        """Required ones by position, others by name unless at their default."""
        items: list[tuple[str, Expr]] = []
        rest = dict(args)
        positional = True
        for p in signature(cls).parameters.values():
            if p.name not in rest:
                positional = False
                continue
            value = rest.pop(p.name)
            required = p.default is inspect.Parameter.empty
            if not required and _is_default(value, p.default):
                positional = False
                continue
            positional = positional and required and p.kind is not p.KEYWORD_ONLY
            items.append(("" if positional else f"{p.name}=", self.value(value)))
        # Arguments taken through **kwargs, in the catalog's order.
        for param in t.params:
            if param.name in rest and not _is_default(rest[param.name], param.default):
                items.append((f"{param.name}=", self.value(rest[param.name])))
        return tuple(items)

    def value(self, value: Any) -> Expr:
        return self.expr(value) if isinstance(value, Step) else _literal(value)

    def model(self, plan: Step) -> str:
        """The ``Model`` class."""
        kind = _KINDS.get(plan.kind)
        if kind is None:
            cls, items = self.layer(plan)
            init = [_statement("super().__init__(", _Call("", items))]
            return f"class Model{_class_body(cls, init, None)}"
        forward = forward_source(plan)
        return f"class Model{_class_body(kind.base, kind.init(self, plan, forward), forward)}"


def _class_body(base: str, init: list[str], forward: Forward | None) -> str:
    """A class's text after its name."""
    lines = [f"({base}):", "    def __init__(self) -> None:", *init]
    if forward is not None:
        lines += ["", forward.code.rstrip("\n")]
    return "\n".join(lines)


def _numbered(step: Step) -> bool:
    return [n for n, _ in step.children] == [str(i) for i in range(len(step.children))]


def _sequential_items(w: _Writer, step: Step) -> tuple[tuple[str, Expr], ...]:
    """``nn.Sequential``'s arguments: the layers, or an ``OrderedDict`` of them by name."""
    if _numbered(step):
        return tuple(("", w.expr(c)) for _, c in step.children)
    if all(_identifier(n) for n, _ in step.children):
        named = tuple((f"{n}=", w.expr(c)) for n, c in step.children)
        return (("", _Call("OrderedDict(", named)),)
    pairs = tuple(("", _Call("(", (("", string(n)), ("", w.expr(c))))) for n, c in step.children)
    return (("", _Call("OrderedDict(", (("", _Call("[", pairs, "]")),))),)


def _sequential_init(w: _Writer, step: Step, forward: Forward | None) -> list[str]:
    if _numbered(step):
        return [_statement("super().__init__(", _Call("", _sequential_items(w, step)))]
    return ["        super().__init__()", *(_assign(n, w.expr(c)) for n, c in step.children)]


def _sequential(w: _Writer, step: Step) -> Expr:
    return _Call("nn.Sequential(", _sequential_items(w, step))


def _module_list_init(w: _Writer, step: Step, forward: Forward | None) -> list[str]:
    held = _Call("[", tuple(("", w.expr(c)) for _, c in step.children), "]")
    lines = [
        "        super().__init__()",
        _statement("self.layers = ", _Call("nn.ModuleList(", (("", held),))),
    ]
    if step.between is not None:
        lines.append(_assign("between", w.expr(step.between)))
    return lines


def _module_dict_init(w: _Writer, step: Step, forward: Forward | None) -> list[str]:
    held = _Call("{", tuple((f"{string(n)}: ", w.expr(c)) for n, c in step.children), "}")
    return [
        "        super().__init__()",
        _statement("self.layers = ", _Call("nn.ModuleDict(", (("", held),))),
    ]


def _graph_init(w: _Writer, step: Step, forward: Forward | None) -> list[str]:
    inlined = forward.inlined if forward is not None else frozenset()
    return [
        "        super().__init__()",
        *(_held(n, c) or _assign(n, w.expr(c)) for n, c in step.children if n not in inlined),
    ]


def _held(name: str, step: Step) -> str:
    """The line registering a tensor the graph holds (``self.pos_embedding =
    nn.Parameter(...)``, ``self.register_buffer(...)``); "" for a module."""
    t = layers().get(step.kind)  # None for a container
    cls = t.build_target() if t is not None else None
    if t is None or not (isinstance(cls, type) and issubclass(cls, ops.Held)):
        return ""
    args = t.with_defaults(step.args)
    tensor = cls.source(args)
    if cls.parameter:
        if _identifier(name):
            return _statement(f"self.{name} = ", _Call("nn.Parameter(", (("", tensor),)))
        parameter = _Call("nn.Parameter(", (("", tensor),))
        items: tuple[tuple[str, Expr], ...] = (("", string(name)), ("", parameter))
        return _statement("self.register_parameter(", _Call("", items))
    items = (("", string(name)), ("", tensor))
    if not args["persistent"]:
        items += (("persistent=", "False"),)
    return _statement("self.register_buffer(", _Call("", items))


_KINDS: dict[str, _Kind] = {
    "Sequential": _Kind("nn.Sequential", _sequential_init, _sequential),
    "ModuleList": _Kind("nn.Module", _module_list_init),
    "ModuleDict": _Kind("nn.Module", _module_dict_init),
    "Graph": _Kind("nn.Module", _graph_init),
}


def _op_sources(used: Mapping[type, None]) -> list[str]:
    """The source of the op classes used, after the helpers of specnet's ops they call."""
    sources: dict[str, str] = {}

    def add(obj: Any) -> None:
        text = inspect.getsource(obj)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Name) and node.id.startswith("_") and node.id not in sources:
                helper = getattr(ops, node.id, None)
                if helper is not None:
                    add(helper)
        sources[obj.__name__] = text

    for cls in used:
        add(cls)
    return list(sources.values())


def python_source(spec: Spec) -> str:
    """Plain PyTorch source equivalent to ``specnet.build(spec)``; defines ``Model``."""
    w = _Writer(spec.source)
    model = w.model(infer(spec))
    parts = [*_op_sources(w.ops), *w.texts, model]
    body = "\n\n\n".join(p.strip("\n") for p in parts)
    title = _docstring(f"{spec.name or 'Model'}: exported from a specnet spec.")
    header = f'"""{title}\n\nGenerated by `specnet export --format python`; needs only torch.\n"""'
    return f"{header}\n\n{_imports(body)}\n\n\n{body}\n"


_BATCH = "batch"
"""The name of the dynamic batch dimension in an exported ONNX file."""

_EXAMPLE_BATCH = 2
"""The batch size of the example inputs a dynamic export traces. Not 1: where a model's code
compares sizes (an LSTM, attention's broadcasting), torch fixes a batch traced as 1 to 1
without an error, or fails (ConvNeXt)."""

_FIXED_BATCH = 1
"""The batch size a model is written for when its batch cannot be dynamic."""

_HARMLESS = (
    # Every batched input shares the one `batch` dimension, as they must: torch names it once.
    (UserWarning, r"# The axis name: batch will not be used, since it shares the same shape "),
    # torch's own decomposition of LSTM and GRU for dynamic shapes calls a deprecated torch API.
    (FutureWarning, r"_check_is_size will be removed in a future PyTorch release"),
    # torch's recurrent layers (nn.LSTM, nn.GRU, nn.RNN) refresh a private list of weights.
    (UserWarning, r"The tensor attributes (\S+\._flat_weights\[\d+\](, )?)+ were assigned during"),
)
"""Warnings of torch's exporter that say nothing about the user's model (they come from the
batch dimension specnet asks for, or from torch's own layers): hidden unless ``verbose``."""


def export_onnx(
    spec: Spec,
    path: str | Path,
    batch: int | None = None,
    model: Any = None,
    *,
    verbose: bool = False,
) -> int | None:
    """Write the model as ONNX through torch's exporter (needs the onnx and onnxscript packages).

    By default the batch is dynamic: the first dimension of every batched input, and so of the
    outputs, is ``batch`` in the file and takes any size. A model whose code fixes its batch
    size (torch specialises it while tracing, or cannot export it otherwise) is written for a
    batch of 1 instead. ``batch`` writes a file for that fixed batch size alone. Returns the
    batch size the file is fixed to; ``None`` when it is dynamic.

    ``model`` is a module built from ``spec`` (e.g. with trained weights); by default
    a freshly built one. ``verbose``: torch's exporter prints its progress on stdout and shows
    all its warnings (else none of its progress, and not the warnings it gives for any model,
    as :data:`_HARMLESS`). Without onnx or onnxscript, raises
    :class:`~specnet._front.errors.MissingDependency` before building anything.
    """
    require(export_needs("onnx"), "ONNX export")
    import torch

    from .compiler import build_module

    if batch is not None:
        check_batch(spec, batch)
    model = (model if model is not None else build_module(spec)).eval()
    if batch is not None:
        _last_try(model, spec, path, batch, verbose=verbose)
        return batch
    try:
        _onnx(model, spec, path, _EXAMPLE_BATCH, verbose=verbose, dynamic=True)
    except torch.onnx.OnnxExporterError as exc:  # tried again with a fixed batch, below
        reason = f"failed: {type(exc).__name__}: {exc}"
    else:
        fixed = _fixed_inputs(spec, path)
        if not fixed:
            return None
        reason = f"fixed the batch size of {', '.join(fixed)} while tracing"
    if verbose:
        print(f"[specnet] the export with a dynamic batch {reason}")
    # The same export as --batch 1: if it fails too, its error is not about the batch.
    _last_try(model, spec, path, _FIXED_BATCH, verbose=verbose)
    return _FIXED_BATCH


def _last_try(model: Any, spec: Spec, path: str | Path, batch: int, *, verbose: bool) -> None:
    """An export with a fixed batch: its failure is the model's (in a line, unless
    ``verbose``)."""
    import torch

    try:
        _onnx(model, spec, path, batch, verbose=verbose, dynamic=False)
    except torch.onnx.OnnxExporterError as exc:
        if verbose:
            raise
        raise _exporter_failed(exc) from None


def check_batch(spec: Spec, batch: int) -> None:
    """Refuse a ``--batch`` whose example inputs would hold more than
    :data:`MAX_EXAMPLE_ELEMENTS`."""
    total = sum(math.prod(t.shape) * (batch if t.batch else 1) for t in spec.inputs.values())
    if total > MAX_EXAMPLE_ELEMENTS:
        raise UsageError(
            f"--batch {batch}: the example inputs the exporter traces would hold {total:,} "
            f"elements, more than {MAX_EXAMPLE_ELEMENTS:,}"
        )


class ExportError(SpecnetError):
    """torch's ONNX exporter cannot convert the model (an operator ONNX lacks)."""


_NO_FUNCTION = re.compile(r"No ONNX function found for <?(?:OpOverload\((?:op=)?)?'?([\w.:]+)")


def _exporter_failed(exc: Exception) -> ExportError:
    """The exporter's failure in a line: the operator it could not convert, when it says."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(str(e) for e in chain)
    found = _NO_FUNCTION.search(text)
    if found is not None:
        why = f"ONNX has no function for torch's {found[1]}"
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        why = f"{type(exc).__name__}: {lines[-1] if lines else 'no message'}"
    return ExportError(
        f"torch's ONNX exporter cannot convert this model: {why} (--verbose shows its report)"
    )


def _onnx(
    model: Any, spec: Spec, path: str | Path, batch: int, *, verbose: bool, dynamic: bool
) -> None:
    """One call of ``torch.onnx.export``, the batch dimension of each batched input dynamic or
    fixed to ``batch`` (the size of the example inputs in both cases)."""
    import torch

    examples = tuple(
        torch.zeros((batch, *t.shape) if t.batch else t.shape, dtype=getattr(torch, t.dtype))
        for t in spec.inputs.values()
    )
    shapes = None
    if dynamic:
        dim = torch.export.Dim(_BATCH)  # one for all inputs: they share the batch
        shapes = tuple({0: dim} if t.batch else None for t in spec.inputs.values())
    with warnings.catch_warnings(), _quiet(not verbose):
        if not verbose:
            for category, message in _HARMLESS:
                warnings.filterwarnings("ignore", message, category)
        try:
            torch.onnx.export(
                model,
                examples,
                str(path),
                input_names=list(spec.inputs),
                dynamo=True,
                dynamic_shapes=shapes,
                verbose=verbose,
            )
        except torch.onnx.OnnxExporterError:
            raise  # the caller may try a fixed batch
        except OSError as exc:  # writing the file: not the model's fault
            raise UsageError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None
        except MemoryError:
            raise
        except Exception as exc:
            if verbose:
                raise
            raise _exporter_failed(exc) from None


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """stdout and stderr at the file descriptors sent to /dev/null while ``quiet``: torch's
    exporter and onnx's optimizer print from C++ too (``Skipping constant folding ...``). A
    descriptor that is not open (a daemon's) is left alone; each one is restored."""
    with contextlib.ExitStack() as stack:
        if quiet:
            sys.stdout.flush()
            sys.stderr.flush()
            null = os.open(os.devnull, os.O_WRONLY)
            stack.callback(os.close, null)
            for fd in (1, 2):
                try:
                    saved = os.dup(fd)
                except OSError:  # not open
                    continue
                stack.callback(os.close, saved)
                stack.callback(os.dup2, saved, fd)
                stack.callback(sys.stderr.flush)
                stack.callback(sys.stdout.flush)
                os.dup2(null, fd)
        yield


def _fixed_inputs(spec: Spec, path: str | Path) -> list[str]:
    """The batched inputs whose batch dimension is a number in the ONNX file at ``path``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {i.name: i.type.tensor_type.shape.dim for i in graph.input}
    return [
        name
        for name, t in spec.inputs.items()
        if t.batch and name in dims and not dims[name][0].dim_param
    ]
