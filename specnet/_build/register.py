"""``specnet.register``: a user's ``nn.Module`` class becomes a layer type specs may name.

A registered type is described like torch's own: its arguments come from the class's
signature, and its shape behaviour is a :class:`~specnet._front.rules.base.Rule`, the
protocol of every built-in layer, so inference, validation, the schema and the compiler
treat it the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from specnet._front.registry import CONTAINERS, REQUIRED, Param, TypeDef, layers
from specnet._front.rules.base import Out, Rule, ShapeMismatch, TensorType, Value, show

from .annotations import type_from_annotation

__all__ = ["register"]

ShapeFn = Callable[[dict[str, Any], tuple[int, ...]], Sequence[int]]
"""A custom layer's shape function: ``(args, input_shape) -> output_shape``."""


def _param(p: inspect.Parameter) -> Param:
    annotation = None if p.annotation is inspect.Parameter.empty else p.annotation
    default = REQUIRED if p.default is inspect.Parameter.empty else p.default
    spec = type_from_annotation(annotation, None if default is REQUIRED else default)
    return Param(p.name, spec, f"`{p.name}` argument", default)


def _rule(type_name: str, shape: ShapeFn, infers: tuple[str, ...]) -> Rule:
    """The built-in rule protocol around a user's ``shape(args, input_shape)``.

    ``args`` holds the layer's arguments, torch's defaults filled in; ``shape`` may set the
    arguments named in ``infers`` in it (``args["in_features"] = input_shape[-1]``) and
    returns the output shape of one sample.
    """

    def custom(args: dict[str, Any], inputs: list[Value]) -> Out:
        x = inputs[0]
        if not isinstance(x, TensorType):
            raise ShapeMismatch(f"{type_name} got a tuple {show(x)}; pick an element with Select")
        given = {k: args.get(k) for k in infers}
        try:
            result = shape(args, x.shape)
            dims = tuple(int(d) for d in result)
        except (ValueError, TypeError, ShapeMismatch) as exc:
            raise ShapeMismatch(f"{type_name} with input {x}: {exc}") from None
        for k in infers:
            if given[k] is not None and args.get(k) != given[k]:
                raise ShapeMismatch(f"{k} is {given[k]} but the input gives {args.get(k)}", k)
            if args.get(k) is None:
                raise ShapeMismatch(f"{type_name}'s shape function did not fill in {k}", k)
        if any(d < 1 for d in dims):
            raise ShapeMismatch(f"{type_name} with input {x} gives an empty shape {list(dims)}")
        return Out(TensorType(dims, x.dtype), args)

    custom.__name__ = custom.__qualname__ = f"custom[{type_name}]"
    return Rule(custom, infers)


def _no_rule(type_name: str) -> Rule:
    def missing(args: dict[str, Any], inputs: list[Value]) -> Out:
        raise ShapeMismatch(f"{type_name} has no shape rule: register it with shape=...")

    return Rule(missing)


def register(
    cls: type | None = None,
    *,
    name: str | None = None,
    infers: tuple[str, ...] = (),
    shape: ShapeFn | None = None,
    replace: bool = False,
) -> Any:
    """Make a custom ``nn.Module`` class usable in specs, by its class name or ``name``.

    Its constructor arguments (read from its signature and annotations) become the
    spec's keys and appear in validation and in the generated JSON Schema.
    ``shape`` is a function ``(args, input_shape) -> output_shape`` on per-sample
    shapes (tuples without the batch dimension); ``args`` holds the layer's
    arguments with their defaults, and ``shape`` fills in those named in ``infers``
    (``args["in_features"] = input_shape[-1]``), which a spec may then leave out.
    Usable as ``register(MyLayer)`` or as a decorator ``@register(name="MyLayer")``.
    """

    def add(target: type) -> type:
        if not (inspect.isclass(target) and issubclass(target, nn.Module)):
            raise TypeError(f"register takes an nn.Module subclass, got {target!r}")
        type_name = name or target.__name__
        reg = layers()
        if not replace and (type_name in reg or type_name in CONTAINERS):
            raise ValueError(f"layer type '{type_name}' is already registered")
        sig = inspect.signature(target.__init__, eval_str=True)
        params = tuple(
            _param(p)
            for p in list(sig.parameters.values())[1:]
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            and p.name not in ("device", "dtype")
        )
        unknown = set(infers) - {p.name for p in params}
        if unknown:
            raise ValueError(f"infers names unknown arguments: {sorted(unknown)}")
        if infers and shape is None:
            raise ValueError("infers needs a shape function that fills those arguments in")
        rule = _rule(type_name, shape, tuple(infers)) if shape else _no_rule(type_name)
        doc = (inspect.getdoc(target) or "").split("\n\n")[0]
        reg.add(TypeDef(type_name, "custom", params, doc, rule, lambda: target), replace=replace)
        return target

    if cls is not None:
        return add(cls)
    return add
