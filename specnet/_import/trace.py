"""Reading a module's ``forward``: torch.fx symbolic tracing, one module at a time.

Each module that is not a registered layer is traced on its own, its submodules kept as
calls, and its graph is then run on an example input: every value is known (shapes,
the integers a ``forward`` computes from them), each call is turned into a spec node
(:mod:`.functions`), and a submodule's own forward is read the same way when the run
reaches it. One forward pass in all; the result is a tree of :class:`Converted` graphs.

Why ``torch.fx`` rather than ``torch.export``: fx keeps the module hierarchy (a call of
``self.layer1[0]`` stays a call of that submodule, whose names are the state_dict's), the
calls a ``forward`` writes (``torch.flatten``, ``x.mean``) stay as written instead of
being lowered to aten operators, and tracing needs no example input; ``torch.export``
inlines every module into aten ops, which would have to be matched back into layers.
"""

from __future__ import annotations

import builtins
import copy
import inspect
import operator
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from specnet._front.registry import layers

from . import functions
from .leaves import (
    equivalent,
    has_state,
    layer_args,
    layer_type,
    signature_args,
    tensor_type,
    tidy,
)
from .problems import Problem, Refused, qualname, user_line

__all__ = ["Converted", "Item", "Tracer", "convert"]


@dataclass
class Item:
    """One node of a converted module's graph."""

    name: str
    type: str
    args: dict[str, Any]
    inputs: list[str]
    out: Any
    """The example value it computed (a tensor, or a tuple of them)."""
    batched: bool = True
    body: Converted | None = None
    """A submodule traced through (``type`` is then its container kind)."""
    call: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of its ``forward``: constants, or names of values for tensors."""
    child: str | None = None
    """The attribute of the module it calls, when it calls one."""
    custom: builtins.type | None = None
    """An unregistered class kept as a custom type (``allow_custom``)."""
    own: bool = False
    """A functional layer on its module's own tensors (``F.layer_norm(x, ..., self.weight)``)."""
    mutates: bool = False
    """It writes its result into its input (``inplace=True``, ``x.add_(y)``): nodes that read
    that input before it must run before it."""


@dataclass
class Converted:
    """A module whose ``forward`` was read: a graph of items."""

    path: str
    module: nn.Module
    inputs: list[str]
    items: list[Item]
    outputs: list[str]
    train_outputs: list[str] = field(default_factory=list)
    """What it returns in training mode, where that differs (``train_output``)."""
    uncalled: list[str] = field(default_factory=list)
    """Submodules with parameters that its forward does not call in eval mode."""

    @property
    def cls(self) -> type:
        return type(self.module)


class Tracer(fx.Tracer):
    """Keeps every submodule call as a call (each is read on its own, or is a layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Importer:
    """Converts a module tree, collecting every problem instead of stopping at the first."""

    def __init__(self, allow_custom: bool = False) -> None:
        self.allow_custom = allow_custom
        self.problems: list[Problem] = []
        self.custom: dict[type, str] = {}
        self.unbatched: frozenset[str] = frozenset()
        """The module's inputs that have no batch dimension."""
        self.training = False
        """Reading a training-mode copy (see :meth:`training_graph`)."""

    def refuse(self, path: str, m: nn.Module, message: str, where: str | None = None) -> None:
        self.problems.append(Problem(path, qualname(type(m)), message, where))

    # -- one module ---------------------------------------------------------------------
    def module(
        self, m: nn.Module, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Converted | None, Any]:
        """Trace ``m`` (called with ``args``, ``kwargs``) and run its graph; returns the
        converted graph (``None`` where it could not be read) and ``m``'s output."""
        try:
            sig = inspect.signature(m.forward)
            bound = sig.bind(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            self.refuse(path, m, f"cannot read forward's signature: {exc}")
            return None, m(*args, **kwargs)
        concrete: dict[str, Any] = {}
        tensors: list[str] = []
        order: list[str] = []
        extra: dict[str, torch.Tensor] = {}
        for name, p in sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                if bound.arguments.get(name):
                    self.refuse(path, m, f"forward takes *{name}: a spec graph has named inputs")
                    return None, m(*args, **kwargs)
                continue
            value = bound.arguments.get(name, p.default)
            if isinstance(value, torch.Tensor):
                tensors.append(name)
                order.append(name)
            elif _tensors(value):  # a list of tensors: one graph input each
                # fx.PH: symbolic_trace's documented placeholder for concrete_args (the
                # DenseNet round trip fails loudly if torch renames it)
                concrete[name] = [fx.PH] * len(value)  # type: ignore[attr-defined]
                for i, t in enumerate(value):
                    tensors.append(f"{name}_{i}")
                    order.append(f"{name}_{i}")
                    extra[f"{name}_{i}"] = t
            else:
                concrete[name] = None if value is inspect.Parameter.empty else value
                order.append(name)
        try:
            graph = Tracer().trace(m, concrete_args=concrete or None)
        except Exception as exc:  # fx raises TraceError, TypeError, AssertionError, ...
            where = user_line(traceback.extract_tb(exc.__traceback__))
            self.refuse(path, m, f"torch.fx cannot trace its forward: {_first_line(exc)}", where)
            return None, m(*args, **kwargs)
        values = {name: extra[name] if name in extra else bound.arguments[name] for name in tensors}
        train = None if self.training else _trace_in_training(m, concrete)
        if isinstance(train, Exception):
            where = user_line(traceback.extract_tb(train.__traceback__))
            self.refuse(
                path,
                m,
                f"torch.fx cannot trace its forward in training mode ({_first_line(train)}): "
                "what it does in training cannot be read",
                where,
            )
            return None, m(*args, **kwargs)
        run = _Run(self, m, path, graph, values, concrete, order)
        run.train_args = _training_arguments(graph, train)
        conv, out = run.run()
        if conv is not None and conv.uncalled:
            conv = self.training_graph(conv, m, path, args, kwargs)
        elif conv is not None and train is not None and not any(it.own for it in conv.items):
            where = _first_difference(graph, train)
            if where is not None:  # what eval mode does is not what training does
                self.refuse(
                    path,
                    m,
                    "forward takes another path in training mode (a `self.training` branch, "
                    "a dropout or drop-path of its own): a spec is one graph in both modes",
                    where,
                )
                return None, out
        if extra:  # a graph with list inputs returns a flat list: the module's own output
            out = m(*args, **kwargs)
            if conv is not None and isinstance(out, torch.Tensor) and len(conv.outputs) != 1:
                self.refuse(path, m, "forward returns a structure a graph cannot")
                return None, out
        return conv, out

    def training_graph(
        self,
        conv: Converted,
        m: nn.Module,
        path: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Converted | None:
        """A module whose forward calls some submodules only in training (GoogLeNet's and
        Inception's auxiliary heads): its graph read in training mode (on a copy, so that no
        batch statistics change), returning in eval mode what the eval graph returns."""
        message = (
            f"{', '.join(conv.uncalled)} never called in eval mode (nor as a training-only "
            "branch): a spec holds what its forward calls"
        )
        if self.training:
            self.refuse(path, m, message)
            return None
        twin = copy.deepcopy(m).train()
        inner = Importer(self.allow_custom)
        inner.training = True
        with torch.random.fork_rng():
            train, _ = inner.module(twin, path, args, kwargs)
        by_child = {it.child: it.name for it in train.items if it.child} if train else {}
        eval_children = {it.name: it.child for it in conv.items if it.child}
        # an eval output is matched by the submodule that computes it; others are refused
        outputs = [by_child.get(eval_children.get(o, "")) for o in conv.outputs]
        called = {str(it.child).split(".")[0] for it in train.items} if train is not None else set()
        if train is None or inner.problems or None in outputs or not set(conv.uncalled) <= called:
            self.refuse(path, m, message)
            return None
        train.train_outputs = train.outputs
        train.outputs = [o for o in outputs if o is not None]
        train.module = m
        _retarget(train, m)
        return train

    def leaf(
        self, m: nn.Module, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any], type | None] | None:
        """A registered layer's type and arguments; ``None`` for a module to trace through."""
        same = equivalent(m)
        if same is not None:
            return same[0], same[1], None
        name = layer_type(m)
        if name is None:
            if type(m) in self.custom:
                return self.custom[type(m)], signature_args(m), type(m)
            return None
        inputs = [tensor_type(a, True) for a in args if isinstance(a, torch.Tensor) and a.dim() > 0]
        return name, layer_args(m, layers()[name], inputs), None

    def keep_custom(self, m: nn.Module) -> str:
        """Keeps an unregistered class as a custom type, under a name of its own."""
        cls = type(m)
        if cls not in self.custom:
            name = cls.__name__
            taken = set(layers()) | set(self.custom.values())
            while name in taken:
                name += "_"
            self.custom[cls] = name
        return self.custom[cls]


class _Cascade(Exception):
    """A node reads one that could not be converted: already reported."""


_TRAINING_ONLY = {F.scaled_dot_product_attention: ("dropout_p",), F.dropout: ("training",)}
"""Calls whose arguments a forward often sets by mode (``dropout_p=p if self.training else
0.0``): read off a trace in training mode, where they are the spec's."""


def _trace_in_training(m: nn.Module, concrete: dict[str, Any]) -> fx.Graph | Exception:
    """``m``'s forward traced in training mode (symbolically: nothing runs, no batch
    statistics change), or why fx cannot trace that mode."""
    was = m.training
    try:
        m.train()
        return Tracer().trace(m, concrete_args=concrete or None)
    except Exception as exc:  # fx raises TraceError, TypeError, ...
        return exc
    finally:
        m.train(was)


def _calls(graph: fx.Graph) -> list[tuple[fx.Node, tuple[Any, ...]]]:
    """Each node with what identifies it across modes: its kind, target and constant
    arguments (those a mode sets, such as a dropout's ``training``, left out)."""
    out = []
    for n in graph.nodes:
        named = _named(n) if n.op == "call_function" else dict(n.kwargs)
        skip = _TRAINING_ONLY.get(n.target, ()) if n.op == "call_function" else ()
        constants = tuple(
            (k, repr(v))
            for k, v in named.items()
            if k not in skip and not isinstance(v, fx.Node) and not _has_nodes(v)
        )
        target = n.target if isinstance(n.target, str) else getattr(n.target, "__qualname__", "?")
        out.append((n, (n.op, target, constants, len(n.args))))
    return out


def _has_nodes(v: Any) -> bool:
    found: list[fx.Node] = []
    fx.node.map_arg(v, lambda x: found.append(x) or x)  # type: ignore[func-returns-value]
    return bool(found)


def _first_difference(graph: fx.Graph, train: fx.Graph) -> str | None:
    """Where the training-mode graph leaves the eval one (its line of Python), or
    ``None`` when they are the same calls."""
    mine, theirs = _calls(graph), _calls(train)
    for (a, ka), (b, kb) in zip(mine, theirs, strict=False):
        if ka != kb:
            return user_line(b.stack_trace) or user_line(a.stack_trace) or "?"
    if len(mine) != len(theirs):
        rest = (theirs if len(theirs) > len(mine) else mine)[min(len(mine), len(theirs))][0]
        return user_line(rest.stack_trace) or "?"
    return None


def _training_arguments(graph: fx.Graph, train: fx.Graph | None) -> dict[fx.Node, dict[str, Any]]:
    """The training-mode values of those arguments, by call of the eval graph: the k-th
    call of a function in one graph is the k-th in the other (when both make as many)."""
    targets = [n for n in graph.nodes if n.op == "call_function" and n.target in _TRAINING_ONLY]
    if not targets or train is None:
        return {}
    theirs = [n for n in train.nodes if n.op == "call_function" and n.target in _TRAINING_ONLY]
    if [n.target for n in theirs] != [n.target for n in targets]:
        return {}
    out: dict[fx.Node, dict[str, Any]] = {}
    for mine, other in zip(targets, theirs, strict=True):
        names = _TRAINING_ONLY[mine.target]
        given = _named(other)
        found = {k: given[k] for k in names if k in given}
        if all(not isinstance(v, fx.Node) for v in found.values()):
            out[mine] = found
    return out


def _named(n: fx.Node) -> dict[str, Any]:
    """A call's arguments by name (positional ones too, where the function's signature
    says their names)."""
    try:
        assert callable(n.target)
        return dict(inspect.signature(n.target).bind_partial(*n.args, **n.kwargs).arguments)
    except (TypeError, ValueError, AssertionError):
        return dict(n.kwargs)


def _retarget(conv: Converted, m: nn.Module) -> None:
    """Points a graph read on a copy of ``m`` (and its subgraphs) back at ``m``'s modules."""
    conv.module = m
    for it in conv.items:
        if it.body is not None and it.child is not None:
            _retarget(it.body, m.get_submodule(it.child))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class _Run:
    """Runs one traced graph on real values and turns its calls into items."""

    def __init__(
        self,
        importer: Importer,
        m: nn.Module,
        path: str,
        graph: fx.Graph,
        inputs: dict[str, Any],
        concrete: dict[str, Any],
        order: list[str],
    ) -> None:
        self.order = order
        """forward's parameters, in the order of the graph's placeholders."""
        self.imp = importer
        self.m = m
        self.path = path
        self.graph = graph
        self.inputs = inputs
        self.concrete = concrete
        self.env: dict[fx.Node, Any] = {}
        self.ref: dict[fx.Node, str] = {}
        """The item (or graph input) whose value a node is."""
        self.batched: dict[fx.Node, bool] = {}
        self.dim_of: dict[fx.Node, tuple[fx.Node, int]] = {}
        """Integers read off a tensor's shape: which tensor, which dimension."""
        self.made: dict[fx.Node, str] = {}
        """Tensors a forward makes from nothing (torch.ones, ...): why they have no node."""
        self.items: list[Item] = []
        self.calls: dict[str, int] = {}
        self.names = (
            {n for n, _ in m.named_children()}
            | {n for n, _ in m.named_parameters(recurse=False)}
            | {n for n, _ in m.named_buffers(recurse=False)}
        )
        self.failed = False
        self.moved: dict[fx.Node, int] = {}
        """Tensors whose batch dimension a permute moved (to this position): their node
        holds them with the batch first, so only an index along the batch's new neighbour
        (``qkv[0]`` of ``[3, B, H, N, D]``) reads them."""
        self.unbound: dict[fx.Node, tuple[fx.Node, int]] = {}
        """``x.unbind(d)``: its pieces are Index nodes of ``x`` along (spec) dimension d."""
        self.train_args: dict[fx.Node, dict[str, Any]] = {}
        """The arguments calls take in training mode where they differ (see
        :func:`_training_arguments`)."""
        self.packed: dict[fx.Node, list[fx.Node]] = {}
        """Named tuples the forward builds (to return them): their elements."""
        self.pieces: dict[fx.Node, functions.Split] = {}
        """``x.split(...)``: its pieces are Narrow nodes of ``x``."""
        self.batch_sized: set[fx.Node] = set()
        """Numbers computed from the batch size (``x.shape[0]``), which only reshapes and
        expands may read: a spec's other arguments are constants."""
        self.broken: set[fx.Node] = set()
        """Nodes that could not be converted (those that read them are not reported)."""
        self.joins: dict[str, list[str]] = {}
        """What each Concat joins, before :meth:`concat_prefix` shortened it."""
        self.owned: set[str] = set()
        """Tensors of the module that a functional layer holds (gone as nodes)."""

    # -- helpers --------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base.replace(".", "_")
        i = 1
        while name in self.names:
            name = f"{base}_{i}".replace(".", "_")
            i += 1
        self.names.add(name)
        return name

    def where(self, n: fx.Node) -> str | None:
        return user_line(n.stack_trace)

    def refuse(self, n: fx.Node, message: str) -> None:
        self.failed = True
        self.imp.refuse(self.path, self.m, message, self.where(n))

    def value(self, a: Any) -> Any:
        """The example values of a call's arguments (plain lists: modules may change them)."""
        return _mutable(fx.node.map_arg(a, lambda x: self.env[x]))

    def tensor_nodes(self, a: Any) -> Iterator[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg(a, lambda x: found.append(x) or x)  # type: ignore[func-returns-value]
        for x in found:
            if x in self.broken or (
                isinstance(self.env.get(x), (torch.Tensor, tuple, list))
                and (x in self.ref or x in self.made or x in self.unbound or x in self.pieces)
            ):
                yield x

    def name_of(self, x: fx.Node) -> str:
        if x in self.broken:
            raise _Cascade
        if x not in self.ref:
            raise Refused(self.made.get(x, f"{x.name} is not a value a spec can hold"))
        return self.ref[x]

    def add(self, item: Item, n: fx.Node) -> None:
        self.items.append(item)
        self.ref[n] = item.name
        self.batched[n] = item.batched

    # -- the run --------------------------------------------------------------------
    def run(self) -> tuple[Converted | None, Any]:
        inputs: list[str] = []
        outputs: list[str] = []
        result: Any = None
        placeholders = iter(self.order)
        for n in self.graph.nodes:
            try:
                if n.op == "placeholder":
                    name = next(placeholders)
                    if name in self.inputs:
                        self.env[n] = self.inputs[name]
                        self.ref[n] = self.input_name(name)
                        self.batched[n] = self.path != "" or name not in self.imp.unbatched
                        inputs.append(self.ref[n])
                    else:
                        self.env[n] = self.concrete.get(name)
                elif n.op == "get_attr":
                    self.get_attr(n)
                elif n.op == "call_module":
                    self.call_module(n)
                elif n.op in ("call_function", "call_method"):
                    self.call(n)
                elif n.op == "output":
                    result = self.value(n.args[0])
                    outputs = self.outputs(n)
            except (Refused, _Cascade) as exc:
                if isinstance(exc, Refused):
                    self.refuse(n, str(exc))
                self.failed = True
                self.broken.add(n)
                if n not in self.env and n.op != "output":
                    self.env[n] = self.execute(n)
        for it in self.items:
            if self.owned & set(it.inputs):
                self.failed = True
                self.imp.refuse(self.path, self.m, f"{it.name} reads a tensor that a layer holds")
        uncalled = [
            name
            for name, child in self.m.named_children()
            if has_state(child)
            and not any(t == name or t.startswith(name + ".") for t in self.calls)
        ]
        if not self.failed:
            outputs = self.gather(outputs)
        if self.failed:
            return None, result
        return Converted(self.path, self.m, inputs, self.items, outputs, uncalled=uncalled), result

    def gather(self, outputs: list[str]) -> list[str]:
        """Calls of a ModuleList's (or ModuleDict's, or Sequential's) items one after
        another, as one node.

        ``for block in self.blocks: x = block(x)`` calls ``blocks.0``, ``blocks.1``, ...: they
        become a Sequential named ``blocks``, whose state_dict keys are the ModuleList's.
        Parameter-free calls between them (an activation, an op) join that Sequential under
        names of their own, which leaves its state_dict as it is.
        """
        items: list[Item] = []
        rename: dict[str, str] = {}
        i = 0
        while i < len(self.items):
            it = self.items[i]
            holder = it.child.rpartition(".")[0] if it.child and "." in it.child else ""
            if not holder:
                it.inputs = [rename.get(x, x) for x in it.inputs]
                it.call = {
                    k: rename.get(v, v) if isinstance(v, str) else v for k, v in it.call.items()
                }
                items.append(it)
                i += 1
                continue
            kids = self.m.get_submodule(holder)
            run = self.chain(i, holder)
            stateful = [f"{holder}.{n}" for n, c in kids.named_children() if has_state(c)]
            called = [r.child for r in run if r.child in stateful]
            elsewhere = [
                r.child
                for r in self.items
                if r not in run and r.child is not None and r.child.startswith(holder + ".")
            ]
            used = {x for r in self.items if r not in run for x in r.inputs} | set(outputs)
            if (
                "." in holder
                or called != stateful
                or elsewhere
                or any(r.name in used for r in run[:-1])
            ):
                self.failed = True
                self.imp.refuse(
                    self.path,
                    self.m,
                    f"the items of {holder} ({type(kids).__name__}) are called apart, not one "
                    "after another over all of them: a spec holds them as one Sequential",
                )
                return outputs
            last = run[-1].name
            taken = {n for n, _ in kids.named_children()}
            for r in run:
                short = (
                    r.child.rpartition(".")[2]
                    if r.child and r.child.startswith(holder + ".")
                    else ""
                )
                if short and r.name == r.child:
                    r.name = short
                else:
                    base, k = short or r.name, 1
                    r.name = base
                    while r.name in taken:
                        r.name = f"{base}_{k}"
                        k += 1
                taken.add(r.name)
                r.child = None if not short else r.child
            first = run[0].inputs
            run[0].inputs = ["input"]
            for j in range(1, len(run)):
                run[j].inputs = [run[j - 1].name]
            body = Converted(_join(self.path, holder), kids, ["input"], run, [run[-1].name])
            gathered = Item(
                holder,
                "Graph",
                {},
                [rename.get(x, x) for x in first],
                run[-1].out,
                run[-1].batched,
                body=body,
                child=holder,
            )
            rename[last] = holder
            self.names.add(holder)
            items.append(gathered)
            i += len(run)
        self.items = items
        return [rename.get(o, o) for o in outputs]

    def chain(self, i: int, holder: str) -> list[Item]:
        """The items from ``i`` on that run one after another on one input: the holder's
        items and parameter-free ones, up to its last item."""
        run = [self.items[i]]
        for it in self.items[i + 1 :]:
            mine = it.child is not None and it.child.startswith(holder + ".")
            free = (
                it.type not in ("Parameter", "Buffer")
                and (it.child is None or not has_state(self.m.get_submodule(it.child)))
                and it.body is None
            )
            if it.inputs != [run[-1].name] or it.call or not (mine or free):
                break
            run.append(it)
        while len(run) > 1 and not (run[-1].child or "").startswith(holder + "."):
            run.pop()
        if len(run[0].inputs) != 1 or run[0].call:
            return run[:1]
        return run

    def input_name(self, name: str) -> str:
        """A graph input's name: forward's argument, unless a submodule has that name."""
        if name not in self.names:
            self.names.add(name)
            return name
        if self.path == "" and len(self.inputs) > 1:  # the spec's inputs are named after them
            raise Refused(f"forward's argument {name!r} has the name of a submodule")
        return self.fresh(name)

    def outputs(self, n: fx.Node) -> list[str]:
        out = n.args[0]
        if isinstance(out, fx.Node) and out in self.packed:
            out = self.packed[out]
        if isinstance(out, fx.Node):
            return [self.name_of(out)]
        if isinstance(out, (tuple, list)) and all(isinstance(o, fx.Node) for o in out):
            return [self.name_of(o) for o in out if isinstance(o, fx.Node)]
        raise Refused("forward returns a structure a graph cannot (a graph returns tensors)")

    def execute(self, n: fx.Node) -> Any:
        args, kwargs = self.value(n.args), self.value(n.kwargs)
        if n.op == "call_module":
            return self.m.get_submodule(str(n.target))(*args, **kwargs)
        if n.op == "call_method":
            return getattr(args[0], str(n.target))(*args[1:], **kwargs)
        if n.op == "get_attr":
            return _fetch(self.m, str(n.target))
        assert callable(n.target)
        return n.target(*args, **kwargs)

    def get_attr(self, n: fx.Node) -> None:
        target = str(n.target)
        value = _fetch(self.m, target)
        self.env[n] = value
        if "." in target:
            raise Refused(
                f"forward reads {target}, a tensor of a submodule: a spec node holds its own"
            )
        kind = "Parameter" if isinstance(value, nn.Parameter) else "Buffer"
        if not isinstance(value, torch.Tensor):
            return
        args: dict[str, Any] = {"shape": list(value.shape)}
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype != "float32":
            args["dtype"] = dtype
        if kind == "Buffer" and target not in self.m.state_dict(keep_vars=True):
            args["persistent"] = False
            args.update(_init_of(value))  # not in the state_dict: its values are the spec's
        self.add(Item(target, kind, args, [], value, batched=False), n)
        self.names.add(target)

    def call_module(self, n: fx.Node) -> None:
        target: str = n.target  # type: ignore[assignment]
        sub = self.m.get_submodule(target)
        n_args, kwargs = list(n.args), self.value(n.kwargs)
        count = self.calls.get(target, 0)
        self.calls[target] = count + 1
        if count and has_state(sub):
            self.env[n] = self.execute(n)
            raise Refused(f"{target} is called {count + 1} times: a spec has no shared weights")
        # A dotted target is an item of a ModuleList or Sequential, gathered by the structure;
        # a parameter-free module called again is a node of its own.
        name = self.fresh(n.name) if count else target
        path = _join(self.path, target)
        args = tuple(self.value(a) for a in n_args)
        leaf = self.imp.leaf(sub, path, args, kwargs)
        body: Converted | None = None
        if leaf is None:
            body, out = self.imp.module(sub, path, args, kwargs)
            if body is None and self.imp.allow_custom:
                kind = self.imp.keep_custom(sub)
                leaf = (kind, signature_args(sub), type(sub))
                self.imp.problems = [
                    p
                    for p in self.imp.problems
                    if p.path != path and not p.path.startswith(path + ".")
                ]
            elif body is None:
                self.env[n] = out
                raise _Cascade
        else:
            out = sub(*args, **kwargs)
        self.env[n] = out
        if any(x in self.moved for x in self.tensor_nodes((n.args, n.kwargs))):
            raise Refused(f"{target} reads a tensor whose batch dimension a permute moved")
        inputs, call = self.arguments(n_args, n.kwargs, sub, target, leaf is None)
        batched = self.is_batched(n)
        mutates = leaf is not None and getattr(sub, "inplace", False) is True
        if leaf is not None:
            kind, largs, custom = leaf
            item = Item(
                name, kind, largs, inputs, out, batched, call=call, child=target, custom=custom
            )
        else:
            assert body is not None
            # constants were given to its trace; tensors by keyword are inputs of its graph
            try:
                order = list(inspect.signature(sub.forward).parameters)
            except (TypeError, ValueError):
                order = []
            tensors = sorted(
                (k for k, v in call.items() if self._is_ref(n, k)),
                key=lambda k: order.index(k) if k in order else len(order),
            )
            inputs = [*inputs, *(call[k] for k in tensors)]
            call = {}
            inputs = self.joined(body, inputs)
            if not body.items and not has_state(sub) and len(body.outputs) == 1:
                # a forward that returns one of its inputs (x[0] of a list): no node
                self.ref[n] = dict(zip(body.inputs, inputs, strict=True))[body.outputs[0]]
                self.batched[n] = True
                return
            if self.splice(n, name, sub, body, inputs):
                return
            item = Item(name, "Graph", {}, inputs, out, batched, body=body, call=call, child=target)
        self.add(item, n)
        if mutates:  # ReLU(inplace=True): later reads of its input see its output
            item.mutates = True
            self.mutated(n, item.name)

    def _is_ref(self, n: fx.Node, key: str) -> bool:
        a = n.kwargs.get(key)
        return isinstance(a, fx.Node) and isinstance(self.env.get(a), torch.Tensor)

    def joined(self, body: Converted, inputs: list[str]) -> list[str]:
        """A submodule whose inputs only meet in one Concat (DenseNet's layers concatenate
        the list of all earlier features first) takes the concatenation instead: the Concat
        moves to this graph, so that every such submodule has one input and the same graph."""
        if len(body.inputs) < 2:
            return inputs
        users = [it for it in body.items if set(it.inputs) & set(body.inputs)]
        if len(users) != 1 or users[0].type != "Concat" or users[0].inputs != body.inputs:
            return inputs
        if users[0].args.get("dim", 1) != 1 or set(body.outputs) & set(body.inputs):
            return inputs
        cat = users[0]
        body.items.remove(cat)
        for it in body.items:
            it.inputs = ["input" if x == cat.name else x for x in it.inputs]
        body.outputs = ["input" if x == cat.name else x for x in body.outputs]
        body.inputs = ["input"]
        joined = Item(self.fresh("cat"), "Concat", {}, inputs, cat.out, True)
        joined.inputs = self.concat_prefix(joined)
        self.items.append(joined)
        return [joined.name]

    def splice(
        self, n: fx.Node, name: str, sub: nn.Module, body: Converted, inputs: list[str]
    ) -> bool:
        """Writes a submodule's graph into this one, where that keeps the state_dict.

        A parameter-free submodule of one node is that node, under the submodule's name (a
        ``Permute`` module is a Permute op). A submodule that calls one functional layer on
        its own tensors (``F.layer_norm(x, ..., self.weight, self.bias)`` between permutes,
        as ConvNeXt's LayerNorm2d) is that layer under its name, with the rest of its graph
        around it as parameter-free nodes.
        """
        own = [it for it in body.items if it.own]
        if len(body.inputs) != len(inputs) or len(body.outputs) != 1:
            return False
        if not own:
            if has_state(sub) or len(body.items) != 1 or body.items[0].body is not None:
                return False
            own = body.items
        elif (
            len(own) > 1
            or any(has_state(c) for c in sub.children())
            or any(it.body is not None and has_state(it.body.module) for it in body.items)
        ):
            return False
        rename = dict(zip(body.inputs, inputs, strict=True))
        keep = own[0]
        for it in body.items:
            new = name if it is keep else self.fresh(it.name)
            if it.child is not None and it.child != keep.child:
                it.child = None
            rename[it.name] = new
        for it in body.items:
            it.inputs = [rename.get(x, x) for x in it.inputs]
            it.call = {k: rename.get(v, v) if isinstance(v, str) else v for k, v in it.call.items()}
            it.name = rename[it.name]
            it.own = False
            self.items.append(it)
        keep.child = n.target  # type: ignore[assignment]
        self.ref[n] = rename[body.outputs[0]]
        self.batched[n] = True
        return True

    def is_batched(self, n: fx.Node) -> bool:
        return any(self.batched.get(x, False) for x in self.tensor_nodes((n.args, n.kwargs)))

    def select(self, a: fx.Node, index: int) -> str:
        """A Select node for one element of a tuple that a node computed."""
        name = self.fresh("select")
        value = self.env[a][index]
        self.items.append(
            Item(
                name,
                "Select",
                {"index": index},
                [self.name_of(a)],
                value,
                self.batched.get(a, True),
            )
        )
        return name

    def arguments(
        self, n_args: list[Any], n_kwargs: Any, sub: nn.Module, target: str, split: bool
    ) -> tuple[list[str], dict[str, Any]]:
        """A submodule call's positional tensors (the node's inputs) and its keywords."""
        inputs: list[str] = []
        call: dict[str, Any] = {}
        try:
            params = list(inspect.signature(sub.forward).parameters)
        except (TypeError, ValueError):
            params = []
        for i, a in enumerate(n_args):
            v = self.value(a)
            if isinstance(a, fx.Node) and _tensors(v) and split:
                # one node's tuple, passed to a submodule read as a graph of one input each
                inputs.extend(self.select(a, k) for k in range(len(v)))
                continue
            if (
                _tensors(v)
                and isinstance(a, (list, tuple))
                and all(isinstance(x, fx.Node) for x in a)
            ):
                if call:
                    raise Refused("a tensor argument after a constant one: pass it by keyword")
                inputs.extend(self.name_of(x) for x in a)
                continue
            if isinstance(a, fx.Node) and (isinstance(v, torch.Tensor) or a in self.ref):
                if call:
                    raise Refused("a tensor argument after a constant one: pass it by keyword")
                inputs.append(self.name_of(a))
            elif i < len(params):
                call[params[i]] = _constant(v)
            else:
                raise Refused(f"positional argument {i} of {target} is not a tensor")
        for k, a in n_kwargs.items():
            v = self.value(a)
            if isinstance(a, fx.Node) and isinstance(v, torch.Tensor):
                call[k] = self.name_of(a)
            else:
                call[k] = _constant(v)
        return inputs, call

    def call(self, n: fx.Node) -> None:
        out = self.execute(n)
        self.env[n] = out
        if getattr(n.target, "__name__", "") in ("_set_grad_enabled", "set_grad_enabled"):
            raise Refused("forward switches gradients off (torch.no_grad()); a spec cannot")
        if _is_namedtuple(n.target):  # GoogLeNetOutputs(logits, aux2, aux1): what it returns
            self.packed[n] = [a for a in n.args if isinstance(a, fx.Node)]
            return
        tensors = list(self.tensor_nodes((n.args, n.kwargs)))
        makes = n.op == "call_function" and n.target in functions.MAKERS
        if (not tensors and not makes) or not _holds_tensor(out):
            if isinstance(out, torch.Tensor):  # made from nothing: torch.ones(n, n), ...
                self.made[n] = f"{_called(n)} makes a tensor in forward; a spec makes it a node"
                self.batched[n] = False
                return
            self.constant(n, out)
            return
        site = functions.Site(self, n, out)
        op = functions.convert(site)
        if isinstance(op, functions.Same):
            self.ref[n] = self.name_of(op.node)
            self.batched[n] = self.batched.get(op.node, True)
            if op.moved:
                self.moved[n] = op.moved
            return
        if isinstance(op, functions.Unbind):
            self.unbound[n] = (op.node, op.dim)
            return
        if isinstance(op, functions.Split):
            self.pieces[n] = op
            return
        types = [
            tensor_type(self.env[x], self.batched.get(x, True))
            for x in op.inputs
            if isinstance(self.env.get(x), torch.Tensor)
        ]
        item = Item(
            self.fresh(op.name or n.name),
            op.type,
            tidy(layers()[op.type], op.args, types),
            [self.name_of(x) for x in op.inputs],
            out,
            op.batched if op.batched is not None else self.is_batched(n),
        )
        if op.moved:
            self.moved[n] = op.moved
        if op.type == "Concat":
            item.inputs = self.concat_prefix(item)
        if op.own:
            # the layer holds the tensors it reads (self.weight): no Parameter nodes for them
            held = {self.ref[x] for x in op.own}
            self.items = [it for it in self.items if it.name not in held]
            item.own = True
            self.owned |= held
        self.add(item, n)
        if _in_place(n):
            item.mutates = True
            self.mutated(n, item.name)

    def mutated(self, n: fx.Node, name: str) -> None:
        """``y.add_(x)`` changes ``y``: the nodes that read ``y`` later read the new value
        (the traced graph still names the old one), as do other names of the same tensor."""
        src = n.args[0]
        if not isinstance(src, fx.Node) or src not in self.ref:
            return
        old, value = self.ref[src], self.env[src]
        for other, ref in list(self.ref.items()):
            if ref == old and self.env.get(other) is value:
                self.ref[other] = name

    def concat_prefix(self, cat: Item) -> list[str]:
        """``cat(x, a, b, c)`` after ``y = cat(x, a, b)`` is ``cat(y, c)`` (the same values):
        DenseNet joins ever longer lists of features, and a spec's Concat takes up to 8."""
        best: Item | None = None
        size = 0
        for it in self.items:
            joins = self.joins.get(it.name, it.inputs)
            k = len(joins)
            if (
                it.type == "Concat"
                and it.args == cat.args
                and size < k < len(cat.inputs)
                and joins == cat.inputs[:k]
            ):
                best, size = it, k
        self.joins[cat.name] = cat.inputs
        return cat.inputs if best is None else [best.name, *cat.inputs[size:]]

    def constant(self, n: fx.Node, out: Any) -> None:
        """An integer (or shape, or flag) that the forward computes; remember its origin,
        and whether it depends on the batch size."""
        found: list[fx.Node] = []
        fx.node.map_arg((n.args, n.kwargs), lambda x: found.append(x) or x)  # type: ignore[func-returns-value]
        if any(x in self.batch_sized for x in found) or (
            _shape_source(n) is not None and self.batched.get(_shape_source(n), False)  # type: ignore[arg-type]
        ):
            self.batch_sized.add(n)
        if n.op == "call_method" and n.target == "size" and len(n.args) > 1:
            x, d = n.args[0], self.value(n.args[1])
            if isinstance(x, fx.Node) and isinstance(d, int):
                self.dim_of[n] = (x, d % self.env[x].dim())
                if self.dim_of[n][1] == 0 and self.batched.get(x, False):
                    self.batch_sized.add(n)
        elif n.op == "call_function" and n.target is operator.getitem:
            src, index = n.args[0], self.value(n.args[1])
            if isinstance(src, fx.Node) and isinstance(index, int):
                base = _shape_source(src)
                if base is not None:
                    self.dim_of[n] = (base, index % len(self.env[src]))
                    if self.dim_of[n][1] != 0:
                        self.batch_sized.discard(n)  # another size of a batched tensor


def _shape_source(n: fx.Node) -> fx.Node | None:
    """``x`` for ``x.shape`` and ``x.size()``."""
    if n.op == "call_function" and n.target is builtins.getattr and n.args[1] == "shape":
        return n.args[0] if isinstance(n.args[0], fx.Node) else None
    if n.op == "call_method" and n.target == "size" and len(n.args) == 1:
        return n.args[0] if isinstance(n.args[0], fx.Node) else None
    return None


def _called(n: fx.Node) -> str:
    if n.op == "call_method":
        return f".{n.target}()"
    return getattr(n.target, "__qualname__", str(n.target))


def _mutable(v: Any) -> Any:
    if isinstance(v, list):
        return [_mutable(x) for x in v]
    if isinstance(v, tuple) and type(v) is not tuple and not hasattr(v, "_fields"):
        return tuple(_mutable(x) for x in v)
    if isinstance(v, dict):
        return {k: _mutable(x) for k, x in v.items()}
    return v


_IN_PLACE = frozenset({operator.iadd, operator.imul, operator.itruediv, F.relu_, torch.relu_})


def _in_place(n: fx.Node) -> bool:
    """A call that changes its first argument: ``x.add_(y)``, ``x += y``, ``inplace=True``."""
    if n.op == "call_method":
        name = str(n.target)
        return name.endswith("_") and not name.startswith("_")
    return n.target in _IN_PLACE or n.kwargs.get("inplace") is True


def _is_namedtuple(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields")


def _tensors(v: Any) -> bool:
    """A list (or tuple) of tensors."""
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, torch.Tensor) for x in v)


def _holds_tensor(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v)


def _constant(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (tuple, list)) and all(isinstance(x, (bool, int, float, str)) for x in v):
        return list(v)
    raise Refused(f"a keyword argument of type {type(v).__name__} is not data")


def _fetch(m: nn.Module, target: str) -> Any:
    obj: Any = m
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _init_of(t: torch.Tensor) -> dict[str, Any]:
    """The ``init`` that gives a buffer outside the state_dict its values, or a refusal."""
    flat = t.detach().flatten()
    if flat.numel() == 0 or bool((flat == 0).all()):
        return {}
    if bool((flat == 1).all()):
        return {"init": "ones"}
    if bool((flat == flat[0]).all()):
        return {"init": "constant", "value": flat[0].item()}
    if bool((flat == torch.arange(flat.numel(), dtype=flat.dtype)).all()):
        return {"init": "arange"}
    raise Refused(
        "a buffer outside the state_dict (persistent=False) holds values a spec cannot write"
    )


def convert(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    kwargs: dict[str, torch.Tensor],
    unbatched: frozenset[str] = frozenset(),
    allow_custom: bool = False,
) -> tuple[Converted | Item | None, Importer]:
    """Reads ``module`` called on ``args`` and ``kwargs`` (``unbatched``: the keyword inputs
    without a batch dimension); the converted tree, or the one layer it is."""
    imp = Importer(allow_custom)
    if args and "input" in unbatched:  # one positional input: forward's first parameter
        try:
            first = next(iter(inspect.signature(module.forward).parameters))
            unbatched = unbatched | {first}
        except (TypeError, ValueError, StopIteration):
            pass
    imp.unbatched = unbatched
    with torch.no_grad():
        leaf = imp.leaf(module, "", args, kwargs)
        if leaf is not None:
            out = module(*args, **kwargs)
            kind, largs, custom = leaf
            return Item("layer", kind, largs, ["input"], out, custom=custom), imp
        converted, _ = imp.module(module, "", args, kwargs)
    return converted, imp
