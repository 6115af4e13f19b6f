"""Attention and transformers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .base import (
    _FLOATS,
    NONE,
    PROBABILITY,
    SIZE,
    Args,
    Call,
    Keyword,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    _aligned,
    _batch_first,
    _fill,
    _float,
    _min_rank,
    batched,
    need_rank,
    prod,
    tensor,
)

rules = RuleSet()


# -- masks given with ``call:`` -------------------------------------------------------------


def _kind(m: TensorType, arg: str, dtype: str) -> str:
    """``"bool"`` or ``"float"``: the two kinds of mask torch reads."""
    if m.dtype == "bool":
        return "bool"
    if m.dtype == dtype:
        return "float"
    raise ShapeMismatch(f"{arg} {m} must be bool or {dtype}, the query's dtype", arg=arg)


def _attn_mask(value: Any, arg: str, rows: int, cols: int, heads: int, dtype: str) -> str | None:
    """An attention mask: ``[L, S]`` without a batch (torch's batched form, ``[N *
    num_heads, L, S]``, is a batched ``[L, S]`` per sample only with one head)."""
    if value is None:
        return None
    m = tensor(value, arg)
    kind = _kind(m, arg, dtype)
    if m.shape == (rows, cols) and (not m.batched or heads == 1):
        return kind
    if m.batched:
        raise ShapeMismatch(
            f"{arg} {m} must be [{rows}, {cols}] (L, S) without a batch dimension: torch's "
            f"batched form [N * heads, L, S] mixes the batch with the {heads} heads",
            arg=arg,
        )
    raise ShapeMismatch(f"{arg} {m} must be [{rows}, {cols}] (L, S)", arg=arg)


def _padding_mask(value: Any, arg: str, length: int, dtype: str) -> str | None:
    """A key padding mask: ``[S]`` per sample (torch's ``(N, S)``)."""
    if value is None:
        return None
    m = tensor(value, arg)
    kind = _kind(m, arg, dtype)
    if not m.batched or m.shape != (length,):
        raise ShapeMismatch(f"{arg} {m} must be [{length}] (S) per sample, with the batch", arg)
    return kind


def _one_kind(**kinds: str | None) -> None:
    """A padding mask and an attention mask read by one attention are of one kind."""
    given = [(name, kind) for name, kind in kinds.items() if kind is not None]
    if len({kind for _, kind in given}) > 1:
        (a, ka), (b, kb) = given
        raise ShapeMismatch(
            f"{a} is a {ka} mask and {b} a {kb} one; torch deprecates mixing them: "
            "give both as bool (true: hidden) or both as float",
            arg=b,
        )


def _hint(keywords: dict[str, Any], flag: str, mask: str) -> None:
    if keywords[flag] is True and keywords[mask] is None:
        raise ShapeMismatch(
            f"{flag} is a hint that {mask} is the causal mask: torch needs {mask} with it "
            f"(call: {{{mask}: <a CausalMask node>}})",
            arg=flag,
        )


def _mask(doc: str) -> Keyword:
    return Keyword(doc, tensor=True)


def _flag(doc: str, default: bool | None) -> Keyword:
    return Keyword(doc, "bool" if default is not None else {"union": ["bool", "null"]}, default)


_PADDING = "True (or -inf) where a position of the sequence is padding: [S] per sample."
_ATTN = "True (or -inf) where a query may not attend to a key: [L, S], without a batch."


def _pair(v: Value) -> tuple[Value, Value]:
    """The two values of a pair (MultiheadAttention's (output, weights))."""
    assert not isinstance(v, TensorType) and len(v) == 2, v
    return v[0], v[1]


def _mha_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    q = tensor(inputs[0])
    k = tensor(inputs[1]) if len(inputs) > 1 else q
    length, keys, heads = q.shape[0], k.shape[0], args["num_heads"]
    _one_kind(
        key_padding_mask=_padding_mask(kw["key_padding_mask"], "key_padding_mask", keys, q.dtype),
        attn_mask=_attn_mask(kw["attn_mask"], "attn_mask", length, keys, heads, q.dtype),
    )
    _hint(kw, "is_causal", "attn_mask")
    output, weights = _pair(out.value)
    if not kw["need_weights"]:
        weights = NONE
    elif not kw["average_attn_weights"]:
        w = tensor(weights)
        weights = TensorType((heads, *w.shape), w.dtype)
    return Out((output, weights), out.args, out.macs)


MHA_CALL = Call(
    {
        "key_padding_mask": _mask(_PADDING),
        "need_weights": _flag("Return the attention weights (else None).", True),
        "attn_mask": _mask(_ATTN),
        "average_attn_weights": _flag("Average the weights over the heads.", True),
        "is_causal": _flag("A hint that attn_mask is the causal mask.", False),
    },
    _mha_call,
)


def _heads(args: Args, e: int, arg: str) -> None:
    heads = args[arg]
    if heads < 1 or e % heads:
        raise ShapeMismatch(f"{arg} {heads} does not divide the embedding size {e}", arg=arg)


def _sequence(v: Value, layer: str, what: str) -> TensorType:
    x = _float(v, layer)
    need_rank(x, (2,), f"{layer} {what}", "L, E")
    return x


@rules.rule(
    "MultiheadAttention",
    infers=("embed_dim",),
    inputs=(1, 3),
    ranges={"kdim": SIZE, "vdim": SIZE},
    call=MHA_CALL,
)
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
        want = e if args.get(arg) is None else args[arg]
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


def _encoder_masks(
    kw: dict[str, Any], x: TensorType, heads: int, mask: str, padding: str, causal: str
) -> None:
    s = x.shape[0]
    _one_kind(
        **{
            mask: _attn_mask(kw[mask], mask, s, s, heads, x.dtype),
            padding: _padding_mask(kw[padding], padding, s, x.dtype),
        }
    )
    _hint(kw, causal, mask)


def _decoder_masks(
    kw: dict[str, Any], tgt: TensorType, memory: TensorType, heads: int, prefix: str = ""
) -> None:
    t, s = tgt.shape[0], memory.shape[0]
    tgt_mask, memory_mask = f"{prefix}tgt_mask", f"{prefix}memory_mask"
    _one_kind(
        tgt_mask=_attn_mask(kw["tgt_mask"], "tgt_mask", t, t, heads, tgt.dtype),
        tgt_key_padding_mask=_padding_mask(
            kw["tgt_key_padding_mask"], "tgt_key_padding_mask", t, tgt.dtype
        ),
    )
    _one_kind(
        memory_mask=_attn_mask(kw["memory_mask"], "memory_mask", t, s, heads, tgt.dtype),
        memory_key_padding_mask=_padding_mask(
            kw["memory_key_padding_mask"], "memory_key_padding_mask", s, tgt.dtype
        ),
    )
    _hint(kw, "tgt_is_causal", tgt_mask)
    _hint(kw, "memory_is_causal", memory_mask)


def _stack_heads(args: Args, layer_arg: str) -> int:
    inner = _node(args, layer_arg)
    heads: int = inner.args.get("nhead", 8) if inner is not None else 8
    return heads


_DECODER_KEYWORDS = {
    "tgt_mask": _mask("True (or -inf) where a target position may not attend to another: [T, T]."),
    "memory_mask": _mask(
        "True (or -inf) where a target position may not attend to a memory one: [T, S]."
    ),
    "tgt_key_padding_mask": _mask(
        "True (or -inf) where a target position is padding: [T] per sample."
    ),
    "memory_key_padding_mask": _mask(
        "True (or -inf) where a memory position is padding: [S] per sample."
    ),
    "memory_is_causal": _flag("A hint that memory_mask is the causal mask.", False),
}


def _encoder_layer_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    _encoder_masks(
        kw, tensor(inputs[0]), args["nhead"], "src_mask", "src_key_padding_mask", "is_causal"
    )
    return out


def _encoder_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    heads = _stack_heads(args, "encoder_layer")
    _encoder_masks(kw, tensor(inputs[0]), heads, "mask", "src_key_padding_mask", "is_causal")
    return out


def _decoder_layer_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    _decoder_masks(kw, tensor(inputs[0]), tensor(inputs[1]), args["nhead"])
    return out


def _decoder_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    _decoder_masks(kw, tensor(inputs[0]), tensor(inputs[1]), _stack_heads(args, "decoder_layer"))
    return out


def _transformer_call(args: Args, inputs: list[Value], kw: dict[str, Any], out: Out) -> Out:
    src, tgt = tensor(inputs[0]), tensor(inputs[1])
    _encoder_masks(kw, src, args["nhead"], "src_mask", "src_key_padding_mask", "src_is_causal")
    _decoder_masks(kw, tgt, src, args["nhead"])
    return out


_SRC_PADDING = _mask("True (or -inf) where a source position is padding: [S] per sample.")
ENCODER_LAYER_CALL = Call(
    {
        "src_mask": _mask("True (or -inf) where a position may not attend to another: [S, S]."),
        "src_key_padding_mask": _SRC_PADDING,
        "is_causal": _flag("A hint that src_mask is the causal mask.", False),
    },
    _encoder_layer_call,
)
ENCODER_CALL = Call(
    {
        "mask": _mask("True (or -inf) where a position may not attend to another: [S, S]."),
        "src_key_padding_mask": _SRC_PADDING,
        "is_causal": _flag("Whether mask is the causal mask (null: torch checks).", None),
    },
    _encoder_call,
)
DECODER_LAYER_CALL = Call(
    {
        **_DECODER_KEYWORDS,
        "tgt_is_causal": _flag("A hint that tgt_mask is the causal mask.", False),
    },
    _decoder_layer_call,
)
DECODER_CALL = Call(
    {
        **_DECODER_KEYWORDS,
        "tgt_is_causal": _flag("Whether tgt_mask is the causal mask (null: torch checks).", None),
    },
    _decoder_call,
)
TRANSFORMER_CALL = Call(
    {
        "src_mask": ENCODER_LAYER_CALL.keywords["src_mask"],
        **_DECODER_KEYWORDS,
        "src_key_padding_mask": _SRC_PADDING,
        "src_is_causal": _flag("Whether src_mask is the causal mask (null: torch checks).", None),
        "tgt_is_causal": _flag("Whether tgt_mask is the causal mask (null: torch checks).", None),
    },
    _transformer_call,
)


@rules.rule("TransformerEncoderLayer", infers=("d_model",), call=ENCODER_LAYER_CALL)
def transformer_encoder_layer(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model)."""
    _batch_first(args)
    x = _sequence(inputs[0], "TransformerEncoderLayer", "src")
    _fill(args, "d_model", x.shape[1], x)
    _heads(args, x.shape[1], "nhead")
    return Out(x, args, _encoder_macs(x.shape[0], x.shape[1], args["dim_feedforward"]))


@rules.rule("TransformerDecoderLayer", infers=("d_model",), inputs=(2, 2), call=DECODER_LAYER_CALL)
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


@rules.rule("Transformer", infers=("d_model",), inputs=(2, 2), call=TRANSFORMER_CALL)
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


@rules.rule("TransformerEncoder", call=ENCODER_CALL)
def transformer_encoder(args: Args, inputs: list[Value]) -> Out:
    """(S, d_model) -> (S, d_model). ``encoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same input."""
    x = _sequence(inputs[0], "TransformerEncoder", "src")
    return _stack(args, "encoder_layer", x, "TransformerEncoder")


@rules.rule("TransformerDecoder", inputs=(2, 2), call=DECODER_CALL)
def transformer_decoder(args: Args, inputs: list[Value]) -> Out:
    """(tgt, memory) -> tgt's shape. ``decoder_layer`` (and ``norm``) arrive as the
    ``Out`` of their own rules on the same inputs."""
    x = _sequence(inputs[0], "TransformerDecoder", "tgt")
    _sequence(inputs[1], "TransformerDecoder", "memory")
    return _stack(args, "decoder_layer", x, "TransformerDecoder")


@rules.rule(
    "ScaledDotProductAttention",
    inputs=(3, 4),
    stateless=True,
    unbatched=True,
    ranges={"dropout_p": PROBABILITY},
)
def scaled_dot_product_attention(args: Args, inputs: list[Value]) -> Out:
    """(query (..., L, E), key (..., S, E), value (..., S, Ev) [, mask]) -> (..., L, Ev),
    batched and of one dtype; the mask (bool, true where attended, or the query's float
    dtype, added to the scores) broadcasts to the scores (..., L, S), with or without a
    batch."""
    name = "ScaledDotProductAttention"
    q, k, v = (batched(inputs[i], name, w) for i, w in enumerate(("query", "key", "value")))
    for x, what in ((q, "query"), (k, "key"), (v, "value")):
        if x.dtype not in _FLOATS or x.dtype != q.dtype:
            raise ShapeMismatch(f"{name} needs floating-point inputs of one dtype, {what} is {x}")
        _min_rank(x, 2, f"{name} {what}", "..., L, E")
    lead = q.shape[:-2]
    (length, e), (keys, ek), (values, ev) = q.shape[-2:], k.shape[-2:], v.shape[-2:]
    if k.shape[:-2] != lead or v.shape[:-2] != lead:
        raise ShapeMismatch(
            f"{name}: query {q}, key {k} and value {v} differ before their last two dimensions"
        )
    if ek != e:
        raise ShapeMismatch(f"{name}: key {k} has {ek} features, query {q} has {e}")
    if values != keys:
        raise ShapeMismatch(f"{name}: key {k} and value {v} differ in length")
    if len(inputs) == 4:
        if args["is_causal"]:
            raise ShapeMismatch(f"{name} takes is_causal or a mask, not both", arg="is_causal")
        m = tensor(inputs[3], "mask")
        if m.dtype != "bool" and m.dtype != q.dtype:
            raise ShapeMismatch(f"{name}'s mask {m} must be bool or {q.dtype}, the query's dtype")
        scores = TensorType((*lead, length, keys), q.dtype)
        try:
            fits = _aligned(name, [scores, m]).shape == scores.shape
        except ShapeMismatch:
            fits = False
        if not fits:
            raise ShapeMismatch(f"{name}'s mask {m} does not broadcast to the scores {scores}")
    macs = prod(lead) * length * keys * (e + ev)
    return Out(TensorType((*lead, length, ev), q.dtype), args, macs)
