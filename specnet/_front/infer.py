"""Shape inference: walk a validated spec with its input shapes, fill in inferred arguments.

The result is a :class:`Step` tree mirroring the module tree that will be built:
every occurrence of a layer with its constructor arguments, its input and output
values and its multiply-accumulates. Nothing here imports torch; every shape
mismatch becomes a located :class:`SpecShapeError` before any module exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorItem, Path, SpecShapeError
from .limits import MAX_ELEMENTS, MAX_PARAMETERS
from .registry import layers
from .rules.base import COMMON_RANGES, Rule, ShapeMismatch, TensorType, Value, show
from .spec import Graph, Layer, ModuleDict, ModuleList, Node, NodeRef, Sequential, Spec

__all__ = ["Step", "infer", "input_values"]


@dataclass
class Step:
    """One module of the model to build, with everything known about it."""

    node: Node
    kind: str
    """The layer type, or the container kind."""
    inputs: list[Value]
    output: Value
    args: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments: those the spec gave plus the inferred ones."""
    macs: int = 0
    children: list[tuple[str, Step]] = field(default_factory=list)
    """Submodules in order (containers) and nested layers given as arguments."""
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """Graph-like containers: the call order, (child name, input names)."""
    outputs: tuple[str, ...] = ()
    tuple_output: bool = False
    between: Step | None = None
    """A ModuleList's parameter-free layer applied after each of its layers."""
    keywords: dict[str, Any] = field(default_factory=dict)
    """A graph node's ``forward`` keyword arguments (``call:``): constants, or the
    :class:`~specnet._front.spec.NodeRef` of a value of its graph."""
    train_outputs: tuple[str, ...] = ()
    """A graph's outputs in training mode, where ``train_output`` gives them."""
    train_tuple: bool = False
    train_output: Value | None = None
    """The value a graph returns in training mode, where it differs (``output`` is eval's)."""


class _Failed(Exception):
    pass


class _Inference:
    def __init__(self, spec: Spec, observe: Callable[[Step], None] | None = None) -> None:
        self.spec = spec
        self.observe = observe
        self.errors: list[ErrorItem] = []
        self.parameters = 0
        """Estimated parameters of the layers inferred so far (:func:`weight_bound`)."""

    def fail(self, node: Node, msg: str, arg: str | None = None, at: Path | None = None) -> _Failed:
        path: Path = node.path if at is None else at
        if arg is not None and isinstance(node, Layer) and arg in node.args:
            path = (*path, arg)
        item = self.spec.source.error(path, msg, kind="shape", notes=node.notes)
        self.errors.append(item)
        return _Failed()

    def check_budget(
        self, node: Layer, value: Value, args: Mapping[str, Any], held: bool = False
    ) -> None:
        """Refuse, before torch builds anything, a layer whose output or weights are too big.

        ``held``: the value is a tensor the graph holds (a Parameter): its elements count.
        """
        for x in _tensors(value):
            if math.prod(x.shape) > MAX_ELEMENTS:
                raise self.fail(
                    node,
                    f"{node.type}'s output {show(x)} has more than {MAX_ELEMENTS} elements per "
                    "sample (a fixed limit, specnet._front.limits.MAX_ELEMENTS)",
                )
        self.parameters += sum(math.prod(x.shape) for x in _tensors(value)) if held else 0
        self.parameters += weight_bound(args)
        if self.parameters > MAX_PARAMETERS:
            raise self.fail(
                node,
                f"model too large: more than {MAX_PARAMETERS} parameters up to {node.type} "
                "(estimated from the layers' sizes; a fixed limit, "
                "specnet._front.limits.MAX_PARAMETERS)",
            )

    def step(self, node: Node, inputs: list[Value]) -> Step:
        done = _STEPS[type(node)](self, node, inputs)
        if self.observe is not None:
            self.observe(done)
        return done

    def sequential(self, node: Node, inputs: list[Value]) -> Step:
        assert isinstance(node, Sequential)
        return self.chain(node, "Sequential", list(node.children), inputs, None)

    def module_list(self, node: Node, inputs: list[Value]) -> Step:
        assert isinstance(node, ModuleList)
        kids = [(str(i), c) for i, c in enumerate(node.children)]
        return self.chain(node, "ModuleList", kids, inputs, node.between)

    def layer(self, node: Node, inputs: list[Value], call: Mapping[str, Any] | None = None) -> Step:
        """A layer's plan; ``call``: a graph node's keyword arguments, tensors by value."""
        assert isinstance(node, Layer)
        t = layers()[node.type]
        rule = t.rule
        assert rule is not None, f"{node.type} is a layer type without a rule"
        self.check_inputs(node, rule, inputs)
        args = t.with_defaults(node.args)
        nested: list[tuple[str, Step]] = []
        for name, value in node.args.items():
            if isinstance(value, Node):
                takes = 1
                if isinstance(value, Layer):
                    inner = layers()[value.type].rule
                    takes = inner.inputs[1] or len(inputs) if inner is not None else 1
                sub = self.step(value, inputs[:takes])
                nested.append((name, sub))
                args[name] = sub
        try:
            out = rule.fn(args, list(inputs))
        except ShapeMismatch as exc:
            msg = (
                exc.message if exc.message.startswith(node.type) else f"{node.type}: {exc.message}"
            )
            raise self.fail(node, msg, exc.arg) from None
        except (ArithmeticError, ValueError):  # e.g. a float size of 1e308: inf is no size
            raise self.fail(
                node, f"{node.type}: its arguments give sizes too large to compute"
            ) from None
        if rule.call is not None and call:
            given = {k: call.get(k, kw.default) for k, kw in rule.call.keywords.items()}
            try:
                out = rule.call.check(dict(out.args), list(inputs), given, out)
            except ShapeMismatch as exc:
                at = (
                    (*node.path, "call", exc.arg)
                    if exc.arg is not None and exc.arg in call
                    else None
                )
                raise self.fail(node, f"{node.type}: {exc.message}", at=at) from None
        self.check_budget(node, out.value, out.args, held=rule.inputs[1] == 0)
        ctor = {k: v for k, v in out.args.items() if k in node.args or k in t.infers}
        for name, sub in nested:
            ctor[name] = sub
        return Step(node, node.type, inputs, out.value, ctor, out.macs, children=nested)

    def check_inputs(self, node: Layer, rule: Rule, inputs: list[Value]) -> None:
        """As many inputs as the layer takes, each with a batch dimension unless its rule
        takes tensors without one."""
        lo, hi = rule.inputs
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            if hi == 0:
                msg = (
                    f"{node.type} takes no input: it is a Graph node (a tensor the graph holds), "
                    f"with 'input: []' or no 'input', got {len(inputs)}"
                )
            else:
                want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
                msg = f"{node.type} takes {want} input(s), got {len(inputs)}"
            explicit = (*node.path, "input") in self.spec.source.values
            if explicit:  # point at the graph node's `input:` list
                raise self.fail(node, msg, at=(*node.path, "input"))
            hint = (
                " (several inputs need a Graph node with 'input: [a, b]')"
                if len(inputs) < lo
                else ""
            )
            raise self.fail(node, msg + hint)
        if rule.unbatched:
            return
        for i, value in enumerate(inputs):
            loose = [x for x in _tensors(value) if not x.batched]
            if loose:
                which = f"input {i + 1} " if len(inputs) > 1 else ""
                raise self.fail(
                    node,
                    f"{node.type} needs its input with the batch dimension, but {which}"
                    f"{show(value)} has none (a Parameter, Buffer, Arange or CausalMask, or an "
                    "input with 'batch: false'): add it to a batched tensor, or give it the "
                    "batch with Expand",
                )

    def chain(
        self,
        node: Node,
        kind: str,
        kids: list[tuple[str, Node]],
        inputs: list[Value],
        between: Node | None,
    ) -> Step:
        if len(inputs) != 1:
            raise self.fail(node, f"a {kind} takes one input, got {len(inputs)}")
        x = inputs[0]
        steps: list[tuple[str, Step]] = []
        applied: Step | None = None
        for name, child in kids:
            s = self.step(child, [x])
            steps.append((name, s))
            x = s.output
            if between is not None:
                applied = self.step(between, [x])
                x = applied.output
        calls: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name, _ in steps]
        return Step(node, kind, inputs, x, children=steps, calls=calls, between=applied)

    def module_dict(self, node: Node, inputs: list[Value]) -> Step:
        assert isinstance(node, ModuleDict)
        if len(inputs) != 1:
            raise self.fail(node, f"a ModuleDict takes one input, got {len(inputs)}")
        kids = dict(node.children)
        built: dict[str, Step] = {}
        x = inputs[0]
        for name in node.forward:
            if name not in built:
                built[name] = self.step(kids[name], [x])
                x = built[name].output
            else:
                # A reused layer: the same module (same arguments) must fit here too.
                again = self.step(kids[name], [x])
                first = built[name]
                if again.args != first.args:
                    raise self.fail(
                        kids[name],
                        f"layer '{name}' is reused with input {show(x)}, which needs {again.args} but it was built with {first.args}",
                    )
                x = again.output
        order = [(n, built[n]) for n, _ in node.children if n in built]
        unused = [n for n, _ in node.children if n not in built]
        if unused:
            raise self.fail(node, f"layers {unused} are never called in 'forward'")
        return Step(
            node, "ModuleDict", inputs, x, children=order, calls=[(n, ()) for n in node.forward]
        )

    def graph(self, node: Node, inputs: list[Value]) -> Step:
        assert isinstance(node, Graph)
        if len(inputs) != len(node.inputs):
            raise self.fail(
                node,
                f"the graph takes {len(node.inputs)} input(s) {list(node.inputs)}, got {len(inputs)}",
            )
        env: dict[str, Value] = dict(zip(node.inputs, inputs, strict=True))
        steps: list[tuple[str, Step]] = []
        calls: list[tuple[str, tuple[str, ...]]] = []
        failed = False
        for g in node.nodes:
            if any(r not in env for r in g.reads):
                continue  # an earlier node failed; its error is already reported
            xs = [env[r] for r in g.inputs]
            try:
                if g.call:
                    given = {k: env[v.name] if isinstance(v, NodeRef) else v for k, v in g.call}
                    s = self.layer(g.node, xs, given)
                    if self.observe is not None:
                        self.observe(s)
                    s.keywords = dict(g.call)
                else:
                    s = self.step(g.node, xs)
            except _Failed:
                failed = True
                continue
            env[g.name] = s.output
            steps.append((g.name, s))
            calls.append((g.name, g.inputs))
        if failed:
            raise _Failed
        outs = [env[o] for o in node.outputs]
        value: Value = tuple(outs) if node.tuple_output else outs[0]
        trained: Value | None = None
        if node.train_outputs:
            train = [env[o] for o in node.train_outputs]
            trained = tuple(train) if node.train_tuple else train[0]
        return Step(
            node,
            "Graph",
            inputs,
            value,
            children=steps,
            calls=calls,
            outputs=node.outputs,
            tuple_output=node.tuple_output,
            train_outputs=node.train_outputs,
            train_tuple=node.train_tuple,
            train_output=trained,
        )


_SIZES = frozenset(n for n, r in COMMON_RANGES.items() if r.low == 1 and r.high is None) - {
    "groups",
    "num_heads",
    "nhead",
    "stride",
    "dilation",
    "upscale_factor",
    "downscale_factor",
}
"""Arguments that are sizes of a layer's weights (features, channels, kernel, hidden...)."""


def weight_bound(args: Mapping[str, Any]) -> int:
    """An estimate of a layer's parameters: the product of its weight sizes (``in_features
    * out_features``, ``in_channels * out_channels * kernel``, ``num_embeddings *
    embedding_dim``, ... times ``num_layers``); 0 for a layer that has none."""
    sizes = [
        math.prod(v) if isinstance(v, (list, tuple)) else v
        for k, v in args.items()
        if k in _SIZES or k in ("num_layers", "num_encoder_layers", "num_decoder_layers")
        if isinstance(v, int)
        or (isinstance(v, (list, tuple)) and all(isinstance(i, int) for i in v))
    ]
    return math.prod(s for s in sizes if isinstance(s, int) and s > 0) if sizes else 0


def _tensors(value: Value) -> list[TensorType]:
    if isinstance(value, TensorType):
        return [value]
    return [t for v in value for t in _tensors(v)]


_STEPS: dict[type[Node], Callable[[_Inference, Node, list[Value]], Step]] = {
    Layer: _Inference.layer,
    Sequential: _Inference.sequential,
    ModuleList: _Inference.module_list,
    ModuleDict: _Inference.module_dict,
    Graph: _Inference.graph,
}
"""Inference of each kind of node."""


def input_values(spec: Spec) -> dict[str, TensorType]:
    """The model's inputs by name, as the values inference starts from."""
    return {name: TensorType(t.shape, t.dtype, t.batch) for name, t in spec.inputs.items()}


def infer(spec: Spec, observe: Callable[[Step], None] | None = None) -> Step:
    """The shape-checked plan of ``spec``'s model; raises :class:`SpecShapeError`.

    ``observe`` is called with each node's step as soon as it is inferred, so that a caller
    knows the shapes before a mismatch too (the language server's inlay hints).
    """
    run = _Inference(spec, observe)
    by_name = input_values(spec)
    values: list[Value] = list(by_name.values())
    model = spec.model
    if isinstance(model, Graph) and len(spec.inputs) > 1:
        values = [by_name[name] for name in model.inputs]
    try:
        plan = run.step(model, values)
    except _Failed:
        raise SpecShapeError(run.errors) from None
    if run.errors:
        raise SpecShapeError(run.errors)
    return plan
