"""A registered layer's spec arguments, read back from the module instance.

torch's layers keep their constructor arguments as attributes of the same name
(``Conv2d.stride``, ``Linear.out_features``); the few that do not (a ``bias`` that is
a tensor or ``None``, the transformer layers' sizes) have a reader here. torch's
defaults are left out, and so are the arguments shape inference gives back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from specnet._front.registry import REQUIRED, Param, TypeDef, layers
from specnet._front.rules.base import ShapeMismatch, TensorType

from .problems import Refused, qualname

__all__ = [
    "equivalent",
    "has_state",
    "layer_args",
    "layer_type",
    "plain",
    "same_as_default",
    "signature_args",
    "tensor_type",
    "tidy",
]

Reader = Callable[[Any], Any]
"""Reads one argument off a layer (an ``nn.Module``; its attributes are untyped)."""


def _activation(m: Any) -> str:
    fn = m.activation
    name = getattr(fn, "__name__", type(fn).__name__).lower()
    if name not in ("relu", "gelu"):
        raise Refused(f"activation {name!r}: a spec names 'relu' or 'gelu'")
    return name


def _encoder_layer(m: Any) -> dict[str, Any]:
    return {
        "d_model": m.self_attn.embed_dim,
        "nhead": m.self_attn.num_heads,
        "dim_feedforward": m.linear1.out_features,
        "dropout": m.dropout.p,
        "activation": _activation(m),
        "layer_norm_eps": m.norm1.eps,
        "batch_first": m.self_attn.batch_first,
        "norm_first": m.norm_first,
        "bias": m.linear1.bias is not None,
    }


def _stack(layer: str) -> dict[str, Reader]:
    return {
        f"{layer}_layer": lambda m: node(m.layers[0]),
        "num_layers": lambda m: len(m.layers),
        "norm": lambda m: None if m.norm is None else node(m.norm),
    }


READERS: dict[str, dict[str, Reader]] = {
    "Mean": {"dim": lambda m: (m.dims[0] if len(m.dims) == 1 else list(m.dims)) or None},
    "MultiheadAttention": {
        "bias": lambda m: m.in_proj_bias is not None,
        "add_bias_kv": lambda m: m.bias_k is not None,
    },
    "TransformerEncoder": {
        **_stack("encoder"),
        "enable_nested_tensor": lambda m: m.enable_nested_tensor,
    },
    "TransformerDecoder": _stack("decoder"),
}
"""Arguments a layer does not keep under their own name, by type."""

_ENCODER_KEYS = (
    "d_model",
    "nhead",
    "dim_feedforward",
    "dropout",
    "activation",
    "layer_norm_eps",
    "batch_first",
    "norm_first",
    "bias",
)


def _encoder_reader(key: str) -> Reader:
    return lambda m: _encoder_layer(m)[key]


READERS["TransformerEncoderLayer"] = {k: _encoder_reader(k) for k in _ENCODER_KEYS}
READERS["TransformerDecoderLayer"] = READERS["TransformerEncoderLayer"]
READERS["Transformer"] = {
    "d_model": lambda m: m.d_model,
    "nhead": lambda m: m.nhead,
    "num_encoder_layers": lambda m: len(m.encoder.layers),
    "num_decoder_layers": lambda m: len(m.decoder.layers),
    "dim_feedforward": lambda m: m.encoder.layers[0].linear1.out_features,
    "dropout": lambda m: m.encoder.layers[0].dropout.p,
    "activation": lambda m: _activation(m.encoder.layers[0]),
    "layer_norm_eps": lambda m: m.encoder.layers[0].norm1.eps,
    "batch_first": lambda m: m.batch_first,
    "norm_first": lambda m: m.encoder.layers[0].norm_first,
    "bias": lambda m: m.encoder.layers[0].linear1.bias is not None,
}

_SKIP = frozenset({"device", "dtype", "_weight", "_freeze"})

EQUIVALENTS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": (
        "StochasticDepth",
        lambda m: {"p": float(m.p), "mode": m.mode},
    ),
    "timm.layers.drop.DropPath": (
        "StochasticDepth",
        lambda m: {"p": float(m.drop_prob), "mode": "row"},
    ),
}
"""Modules of other libraries that are one of specnet's types (same computation, in training
too; no parameters), by qualified class name: their forward does nothing in eval mode, so
tracing through them would lose them."""


def has_state(m: nn.Module) -> bool:
    """Whether a module holds parameters or buffers (its own or its submodules')."""
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def equivalent(m: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """specnet's type and arguments for a module of another library that it has."""
    entry = EQUIVALENTS.get(qualname(type(m)))
    if entry is None:
        return None
    if type(m).__name__ == "DropPath" and not getattr(m, "scale_by_keep", True):
        return None
    return entry[0], entry[1](m)


_CLASSES: dict[int, dict[type, str]] = {}


def _classes() -> dict[type, str]:
    """Registered classes -> type names (again when a layer is registered)."""
    key = len(layers())
    if key in _CLASSES:
        return _CLASSES[key]
    out: dict[type, str] = {}
    for name, t in layers().items():
        if t.kind not in ("layer", "op", "custom") or t.factory is None:
            continue
        try:
            target = t.build_target()
        except (ImportError, AttributeError):  # pragma: no cover - a broken registration
            continue
        if isinstance(target, type):
            out[target] = name
            for base in target.__mro__[1:]:  # specnet's MultiheadAttention is torch's too
                if base.__module__.startswith("torch.nn") and base.__name__ == name:
                    out.setdefault(base, name)
    _CLASSES.clear()
    _CLASSES[key] = out
    return out


def layer_type(m: nn.Module) -> str | None:
    """The registered type a module is an instance of (its exact class), or ``None``.

    A subclass counts when it only changes the constructor (it computes, trains and loads
    as its base does); one that overrides ``forward``, ``train`` or anything else is traced
    through, or refused.
    """
    classes = _classes()
    for cls in type(m).__mro__:
        if cls in classes:
            if all(_only_init(sub) for sub in type(m).__mro__[: type(m).__mro__.index(cls)]):
                return classes[cls]
            return None
        if cls is nn.Module:
            break
    return None


def _only_init(cls: type) -> bool:
    """A class that defines no method but ``__init__`` (and no properties)."""
    return not any(
        (callable(v) or isinstance(v, (property, staticmethod, classmethod))) and k != "__init__"
        for k, v in vars(cls).items()
        if not (k.startswith("__") and k.endswith("__") and k != "__call__")
    )


def plain(value: Any) -> Any:
    """A spec value: tuples (and sizes) become lists, dtypes their names."""
    if isinstance(value, (tuple, list, torch.Size)):
        return [plain(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return value


def _accepts_int(p: Param) -> bool:
    t = p.type
    return isinstance(t, dict) and "union" in t and "int" in t["union"]


def _short(p: Param, value: Any) -> Any:
    """``[3, 3]`` as ``3`` where the argument takes either (torch repeats it)."""
    if (
        isinstance(value, list)
        and value
        and all(v == value[0] and isinstance(v, int) and not isinstance(v, bool) for v in value)
        and _accepts_int(p)
    ):
        return value[0]
    return value


def same_as_default(p: Param, value: Any) -> bool:
    """Whether ``value`` is the argument's default (``[1, 1]`` is ``1``) and may be left out."""
    default = p.default
    if default is REQUIRED:
        return False
    if isinstance(default, (int, float)) and isinstance(value, list):
        return all(v == default for v in value) and _accepts_int(p)
    if isinstance(default, list) and isinstance(value, list):
        return value == default
    return bool(type(value) is type(default) and value == default) or (
        isinstance(value, (int, float))
        and isinstance(default, (int, float))
        and not isinstance(value, bool)
        and not isinstance(default, bool)
        and value == default
    )


def _read(m: nn.Module, t: TypeDef, p: Param) -> Any:
    reader = READERS.get(t.name, {}).get(p.name)
    if reader is not None:
        return reader(m)
    if not hasattr(m, p.name):
        raise AttributeError(p.name)
    value = getattr(m, p.name)
    if p.type == "bool" and (value is None or isinstance(value, torch.Tensor)):
        return value is not None  # bias=True keeps a tensor
    if isinstance(value, nn.Module):
        return node(value)
    return value


def layer_args(m: nn.Module, t: TypeDef, inputs: list[TensorType]) -> dict[str, Any]:
    """The spec arguments of ``m`` (a ``t``): what differs from torch's defaults, without
    what shape inference infers (unless it would infer another value)."""
    args: dict[str, Any] = {}
    missing: list[str] = []
    for p in t.params:
        if p.name in _SKIP and t.kind == "layer":  # torch's factory arguments
            continue
        try:
            value = plain(_read(m, t, p))
        except AttributeError:
            if p.required and p.name not in t.infers:
                missing.append(p.name)
            continue
        if isinstance(value, float) and p.type == "int" and value.is_integer():
            value = int(value)
        if not same_as_default(p, value):
            args[p.name] = _short(p, value)
    if missing:
        raise Refused(f"{t.name}: cannot read {', '.join(missing)} back from the module")
    return _without_inferred(t, args, inputs)


def tidy(t: TypeDef, args: dict[str, Any], inputs: list[TensorType]) -> dict[str, Any]:
    """``args`` without torch's defaults and without what shape inference gives back."""
    out = {}
    for k, v in args.items():
        p = t.by_name.get(k)
        if p is None:
            out[k] = v
        elif not same_as_default(p, plain(v)):
            out[k] = _short(p, plain(v))
    return _without_inferred(t, out, inputs)


def _without_inferred(t: TypeDef, args: dict[str, Any], inputs: list[TensorType]) -> dict[str, Any]:
    if not t.infers or t.rule is None or not inputs:
        return args
    given = {k: v for k, v in args.items() if k not in t.infers}
    try:
        out = t.rule.fn(t.with_defaults(given), list(inputs))
    except (ShapeMismatch, KeyError, TypeError, ValueError, IndexError):
        return args
    filled = out.args if out.args is not None else {}
    for name in t.infers:
        if name in args and name in filled:
            p = t.by_name.get(name)
            mine = args[name]
            theirs = plain(filled[name])
            if p is not None and (_short(p, theirs) == mine or theirs == mine):
                del args[name]
    return args


def node(m: nn.Module) -> dict[str, Any] | str:
    """A nested layer argument (a TransformerEncoder's ``encoder_layer``, its ``norm``)."""
    name = layer_type(m)
    if name is None:
        raise Refused(f"argument module {qualname(type(m))} is not a registered layer type")
    args = layer_args(m, layers()[name], [])
    return {"type": name, **args} if args else name


def tensor_type(value: Any, batched: bool) -> TensorType:
    """specnet's view of a tensor: the shape of one sample (without the batch dimension)."""
    dtype = str(value.dtype).removeprefix("torch.")
    shape = tuple(int(d) for d in (value.shape[1:] if batched else value.shape))
    return TensorType(shape, dtype, batched)


def signature_args(m: nn.Module) -> dict[str, Any]:
    """A custom module's constructor arguments, read from the attributes of the same names
    (data only: numbers, strings, booleans, lists of them), those that differ from the
    defaults. An argument it does not keep so cannot be read back: refused."""
    out: dict[str, Any] = {}
    sig = inspect.signature(type(m).__init__)
    unread = [
        p.name
        for p in list(sig.parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and (not hasattr(m, p.name) or not _data(plain(getattr(m, p.name))))
    ]
    if unread:
        raise Refused(
            f"{qualname(type(m))} does not keep {', '.join(unread)} as attributes of those names "
            "(data): its arguments cannot be read back; register it with specnet.register"
        )
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = plain(getattr(m, p.name))
        if p.default is not inspect.Parameter.empty and plain(p.default) == value:
            continue
        out[p.name] = value
    return out


def _data(value: Any) -> bool:
    if isinstance(value, list):
        return all(_data(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
