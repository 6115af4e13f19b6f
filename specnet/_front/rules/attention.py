"""Attention and transformers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .base import (
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _batch_first,
    _fill,
    _float,
    need_rank,
)

rules = RuleSet()


def _heads(args: Args, e: int, arg: str) -> None:
    heads = args[arg]
    if heads < 1 or e % heads:
        raise ShapeMismatch(f"{arg} {heads} does not divide the embedding size {e}", arg=arg)


def _sequence(v: Value, layer: str, what: str) -> TensorType:
    x = _float(v, layer)
    need_rank(x, (2,), f"{layer} {what}", "L, E")
    return x


@rules.rule("MultiheadAttention", infers=("embed_dim",), inputs=(1, 3))
def multihead_attention(args: Args, inputs: list[Value]) -> Out:
    """(query, key, value) -> (output (L, E), weights (L, S)), weights averaged over heads.

    One input is self-attention (query = key = value); two are (query, key)
    with value = key. ``add_bias_kv`` and ``add_zero_attn`` each add one key.
    """
    _batch_first(args)
    q = _sequence(inputs[0], "MultiheadAttention", "query")
    k = _sequence(inputs[1], "MultiheadAttention", "key") if len(inputs) > 1 else q
    v = _sequence(inputs[2], "MultiheadAttention", "value") if len(inputs) > 2 else k
    _fill(args, "embed_dim", q.shape[1], q)
    e = q.shape[1]
    _heads(args, e, "num_heads")
    for x, arg, what in ((k, "kdim", "key"), (v, "vdim", "value")):
        want = args.get(arg) or e
        if x.shape[1] != want:
            raise ShapeMismatch(
                f"{what} {x} has {x.shape[1]} features, {arg} is {args.get(arg)} "
                f"(embed_dim {e} when null)",
                arg=arg,
            )
    if k.shape[0] != v.shape[0]:
        raise ShapeMismatch(f"key {k} and value {v} differ in length")
    length, keys = q.shape[0], k.shape[0] + bool(args["add_bias_kv"]) + bool(args["add_zero_attn"])
    macs = e * (2 * length * e + k.shape[0] * (k.shape[1] + v.shape[1]) + 2 * length * keys)
    return Out((TensorType((length, e), q.dtype), TensorType((length, keys), q.dtype)), args, macs)


def _encoder_macs(length: int, e: int, ff: int) -> int:
    return 4 * length * e * e + 2 * length * length * e + 2 * length * e * ff


def _decoder_macs(length: int, memory: int, e: int, ff: int) -> int:
    cross = 2 * length * e * e + 2 * memory * e * e + 2 * length * memory * e
    return _encoder_macs(length, e, ff) + cross


def _features(x: TensorType, e: int, what: str) -> None:
    if x.shape[1] != e:
        raise ShapeMismatch(f"{what} {x} has {x.shape[1]} features, d_model is {e}", arg="d_model")


@rules.rule("TransformerEncoderLayer", infers=("d_model",))
def transformer_encoder_layer(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model)."""
    _batch_first(args)
    x = _sequence(inputs[0], "TransformerEncoderLayer", "src")
    _fill(args, "d_model", x.shape[1], x)
    _heads(args, x.shape[1], "nhead")
    return Out(x, args, _encoder_macs(x.shape[0], x.shape[1], args["dim_feedforward"]))


@rules.rule("TransformerDecoderLayer", infers=("d_model",), inputs=(2, 2))
def transformer_decoder_layer(args: Args, inputs: list[Value]) -> Out:
    """(tgt (T, d_model), memory (S, d_model)) -> (T, d_model)."""
    _batch_first(args)
    tgt = _sequence(inputs[0], "TransformerDecoderLayer", "tgt")
    memory = _sequence(inputs[1], "TransformerDecoderLayer", "memory")
    _fill(args, "d_model", tgt.shape[1], tgt)
    _features(memory, tgt.shape[1], "memory")
    _heads(args, tgt.shape[1], "nhead")
    macs = _decoder_macs(tgt.shape[0], memory.shape[0], tgt.shape[1], args["dim_feedforward"])
    return Out(tgt, args, macs)


@rules.rule("Transformer", infers=("d_model",), inputs=(2, 2))
def transformer(args: Args, inputs: list[Value]) -> Out:
    """(src (S, d_model), tgt (T, d_model)) -> (T, d_model).

    A ``custom_encoder``/``custom_decoder`` is taken to keep the shape, as torch
    requires; the MACs count the standard layers.
    """
    _batch_first(args)
    src = _sequence(inputs[0], "Transformer", "src")
    tgt = _sequence(inputs[1], "Transformer", "tgt")
    _fill(args, "d_model", src.shape[1], src)
    _features(tgt, src.shape[1], "tgt")
    _heads(args, src.shape[1], "nhead")
    e, ff, s, t = src.shape[1], args["dim_feedforward"], src.shape[0], tgt.shape[0]
    macs = args["num_encoder_layers"] * _encoder_macs(s, e, ff)
    macs += args["num_decoder_layers"] * _decoder_macs(t, s, e, ff)
    return Out(tgt, args, macs)


class Described(Protocol):
    """A nested node argument as the compiler passes it: the ``Out`` of its rule,
    or anything else with the (constructor) ``args`` and ``macs`` it found."""

    @property
    def args(self) -> Mapping[str, Any]: ...

    @property
    def macs(self) -> int: ...


def _node(args: Args, name: str) -> Described | None:
    node = args.get(name)
    if node is None:
        return None
    if not (isinstance(getattr(node, "args", None), Mapping) and hasattr(node, "macs")):
        raise TypeError(f"{name} must be given as the Out of its shape rule, got {node!r}")
    described: Described = node
    return described


def _stack(args: Args, layer_arg: str, x: TensorType, layer: str) -> Out:
    """A stack of ``num_layers`` copies of ``args[layer_arg]``, then ``norm``.

    The nested layers were described by their own rules on the same input(s),
    so only the stack's own input is checked here, against their ``d_model``.
    """
    inner = _node(args, layer_arg)
    if inner is None:
        raise ShapeMismatch(f"{layer} needs {layer_arg}", arg=layer_arg)
    e = inner.args.get("d_model")
    if e is not None and x.shape[1] != e:
        raise ShapeMismatch(
            f"{layer} input {x} has {x.shape[1]} features, {layer_arg} has d_model {e}", layer_arg
        )
    norm = _node(args, "norm")
    macs = args["num_layers"] * inner.macs + (norm.macs if norm else 0)
    return Out(x, args, macs)


@rules.rule("TransformerEncoder")
def transformer_encoder(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model). ``encoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same input."""
    x = _sequence(inputs[0], "TransformerEncoder", "src")
    return _stack(args, "encoder_layer", x, "TransformerEncoder")


@rules.rule("TransformerDecoder", inputs=(2, 2))
def transformer_decoder(args: Args, inputs: list[Value]) -> Out:
    """(tgt, memory) -> tgt's shape. ``decoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same inputs."""
    x = _sequence(inputs[0], "TransformerDecoder", "tgt")
    _sequence(inputs[1], "TransformerDecoder", "memory")
    return _stack(args, "decoder_layer", x, "TransformerDecoder")
