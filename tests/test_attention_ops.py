"""Attention with masks: ``call:`` keyword arguments, scaled dot-product attention, chunks.

Each graph is compared with torch called by hand on the same weights; keyword arguments are
checked against torch's documented mask shapes before anything is built, at the spec line.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import specnet
from specnet._build.export import python_source

SELF_ATTENTION = """\
input:
  x: [5, 8]
  padding: {shape: [5], dtype: bool}
model:
  type: Graph
  inputs: [x, padding]
  nodes:
    mask: {type: CausalMask, input: x}
    att:
      type: MultiheadAttention
      num_heads: 2
      batch_first: true
      input: x
      call: {attn_mask: mask, key_padding_mask: padding, need_weights: false}
    out: {type: Select, index: 0}
"""


def inputs() -> tuple[Tensor, Tensor]:
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[0, -2:] = True
    return torch.randn(3, 5, 8), padding


def exported(spec: Any) -> nn.Module:
    namespace: dict[str, Any] = {}
    exec(compile(python_source(specnet.load(spec)), "<exported>", "exec"), namespace)
    model: nn.Module = namespace["Model"]()
    return model


def test_masks_are_passed_by_keyword() -> None:
    model = specnet.build(SELF_ATTENTION).eval()
    x, padding = inputs()
    mask = nn.Transformer.generate_square_subsequent_mask(5).isinf()
    want, weights = model.att(x, x, x, key_padding_mask=padding, attn_mask=mask, need_weights=False)
    assert weights is None
    torch.testing.assert_close(model(x, padding), want)
    assert "self.att(x, attn_mask=mask, key_padding_mask=padding, need_weights=False)" in model.code
    copy = exported(SELF_ATTENTION).eval()
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(copy(x, padding), want)


def test_weights_none_and_per_head() -> None:
    weightless = SELF_ATTENTION.replace("index: 0", "index: 1")
    with pytest.raises(specnet.SpecShapeError) as info:
        specnet.build(weightless)
    (error,) = info.value.errors
    assert error.path == ("model", "nodes", "out", "index")
    assert "picks None" in error.msg
    per_head = weightless.replace("need_weights: false", "average_attn_weights: false")
    assert specnet.summary(per_head).output == "[2, 5, 5]"
    model = specnet.build(per_head).eval()
    assert model(*inputs()).shape == (3, 2, 5, 5)


def errors(spec: str) -> list[specnet.ErrorItem]:
    with pytest.raises(specnet.SpecError) as info:
        specnet.build(spec)
    assert all(e.line is not None for e in info.value.errors)
    return info.value.errors


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ("attn_mask: mask", "atn_mask: mask", ("call", "atn_mask"), "did you mean 'attn_mask'"),
        ("attn_mask: mask", "attn_mask: maks", ("call", "attn_mask"), "did you mean 'mask'"),
        ("attn_mask: mask", "attn_mask: out", ("call", "attn_mask"), "defined later"),
        ("need_weights: false", "need_weights: 0", ("call", "need_weights"), "expected bool"),
        ("attn_mask: mask", "attn_mask: 3", ("call", "attn_mask"), "a tensor"),
        (
            "key_padding_mask: padding",
            "key_padding_mask: mask",
            ("call", "key_padding_mask"),
            "[5] (S) per sample",
        ),
        (
            "attn_mask: mask",
            "attn_mask: padding",
            ("call", "attn_mask"),
            "must be [5, 5] (L, S) without a batch",
        ),
        ("need_weights: false", "is_causal: true", ("call", "attn_mask"), "mixing"),
        ("call: {", "repeat: 2\n      call: {", ("call",), "a Sequential of copies"),
    ],
)
def test_keyword_errors_are_located(
    old: str, new: str, path: tuple[str, ...], fragment: str
) -> None:
    spec = SELF_ATTENTION.replace(old, new)
    if "is_causal" in new:  # a float mask with a bool padding mask
        spec = spec.replace("input: x}", "input: x, dtype: float32}")
    found = errors(spec)
    assert any(e.path == ("model", "nodes", "att", *path) and fragment in e.msg for e in found), (
        found
    )


def test_is_causal_needs_its_mask() -> None:
    spec = SELF_ATTENTION.replace("attn_mask: mask, ", "is_causal: true, ")
    spec = spec.replace("    mask: {type: CausalMask, input: x}\n", "")
    (error,) = errors(spec)
    assert error.path == ("model", "nodes", "att", "call", "is_causal")
    assert "torch needs attn_mask with it" in error.msg


def test_call_is_for_graph_nodes_and_layers_that_declare_it() -> None:
    (error,) = errors(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: ReLU, call: {inplace: true}}\n"
    )
    assert (
        error.path == ("model", "layers", 0, "call")
        and "only allowed on the nodes of a Graph" in error.msg
    )
    (error,) = errors(
        "input: [4]\nmodel:\n  type: Graph\n  nodes:\n    a: {type: ReLU, call: {x: 1}}\n"
    )
    assert error.path == ("model", "nodes", "a", "call", "x")
    assert "unknown keyword 'x' for ReLU's forward" in error.msg


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]).isinf()
        return self.encoder(x, mask=mask, src_key_padding_mask=padding, is_causal=True)


ENCODER = """\
input:
  x: [5, 8]
  padding: {shape: [5], dtype: bool}
model:
  type: Graph
  inputs: [x, padding]
  nodes:
    mask: {type: CausalMask, input: x}
    encoder:
      type: TransformerEncoder
      input: x
      num_layers: 2
      enable_nested_tensor: false
      encoder_layer: {type: TransformerEncoderLayer, nhead: 2, dim_feedforward: 16, dropout: 0.0, batch_first: true}
      call: {mask: mask, src_key_padding_mask: padding, is_causal: true}
"""


def test_an_encoder_with_masks_is_torchs() -> None:
    hand = Encoder().eval()
    model = specnet.build(ENCODER).eval()
    assert list(model.state_dict()) == list(hand.state_dict())
    model.load_state_dict(hand.state_dict())
    x, padding = inputs()
    torch.testing.assert_close(model(x, padding), hand(x, padding))


DECODER = """\
input:
  tgt: [4, 8]
  memory: [6, 8]
  memory_padding: {shape: [6], dtype: bool}
model:
  type: Graph
  inputs: [tgt, memory, memory_padding]
  nodes:
    causal: {type: CausalMask, input: tgt, dtype: float32}
    layer:
      type: TransformerDecoderLayer
      input: [tgt, memory]
      nhead: 2
      dim_feedforward: 16
      dropout: 0.0
      batch_first: true
      call: {tgt_mask: causal, memory_key_padding_mask: memory_padding, tgt_is_causal: true}
"""


def test_a_decoder_layer_with_masks_is_torchs() -> None:
    model = specnet.build(DECODER).eval()
    tgt, memory = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[1, -3:] = True
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    want = model.layer(
        tgt, memory, tgt_mask=mask, memory_key_padding_mask=padding, tgt_is_causal=True
    )
    torch.testing.assert_close(model(tgt, memory, padding), want)
    bad = DECODER.replace("memory_key_padding_mask", "tgt_key_padding_mask")
    (error,) = errors(bad)
    assert error.path == ("model", "nodes", "layer", "call", "tgt_key_padding_mask")
    assert "must be [4] (S) per sample" in error.msg


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one projection, split into q, k, v, causal SDPA."""

    def __init__(self, embed: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(embed, 3 * embed)
        self.c_proj = nn.Linear(embed, embed)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


GPT_ATTENTION = """\
input: [5, 8]
model:
  type: Graph
  nodes:
    c_attn: {type: Linear, out_features: 24}
    qkv: {type: Chunk, chunks: 3, dim: 2}
    q: {type: Select, index: 0, input: qkv}
    k: {type: Select, index: 1, input: qkv}
    v: {type: Select, index: 2, input: qkv}
    qh: {type: Sequential, input: q, layers: [{type: Reshape, shape: [5, 2, 4]}, {type: Transpose, dim0: 1, dim1: 2}]}
    kh: {type: Sequential, input: k, layers: [{type: Reshape, shape: [5, 2, 4]}, {type: Transpose, dim0: 1, dim1: 2}]}
    vh: {type: Sequential, input: v, layers: [{type: Reshape, shape: [5, 2, 4]}, {type: Transpose, dim0: 1, dim1: 2}]}
    y: {type: ScaledDotProductAttention, is_causal: true, dropout_p: 0.1, input: [qh, kh, vh]}
    back: {type: Transpose, dim0: 1, dim1: 2}
    merged: {type: Reshape, shape: [5, 8]}
    c_proj: {type: Linear, out_features: 8}
"""


def test_causal_attention_from_chunks_is_nanogpts() -> None:
    hand = CausalSelfAttention().eval()
    model = specnet.build(GPT_ATTENTION).eval()
    assert list(model.state_dict()) == list(hand.state_dict())
    model.load_state_dict(hand.state_dict())
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(model(x), hand(x))
    assert "qkv = x.chunk(3, dim=2)" in model.code
    assert "q = qkv[0]" in model.code
    assert "is_causal=True" in model.code and "0.1 if self.training else 0.0" in model.code
    copy = exported(GPT_ATTENTION).eval()
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(copy(x), model(x))
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    model.train()  # dropout of the attention weights in training only
    torch.manual_seed(0)
    assert not torch.allclose(model(x), hand(x))


def test_scaled_dot_product_attention_with_a_padding_mask() -> None:
    """BERT's mask: true where attended, [1, 1, S] per sample over heads and queries."""
    spec = """\
input:
  q: [2, 3, 4]
  kv: [2, 5, 4]
  keep: {shape: [5], dtype: bool}
model:
  type: Graph
  inputs: [q, kv, keep]
  nodes:
    mask: {type: Reshape, input: keep, shape: [1, 1, 5]}
    att: {type: ScaledDotProductAttention, input: [q, kv, kv, mask], scale: 0.5}
"""
    model = specnet.build(spec)
    q, kv, keep = torch.randn(3, 2, 3, 4), torch.randn(3, 2, 5, 4), torch.rand(3, 5) > 0.3
    keep[:, 0] = True
    want = F.scaled_dot_product_attention(q, kv, kv, attn_mask=keep.view(3, 1, 1, 5), scale=0.5)
    torch.testing.assert_close(model(q, kv, keep), want)
    (error,) = errors(spec.replace("shape: [1, 1, 5]}", "shape: [5, 1, 1]}"))
    assert error.path == ("model", "nodes", "att") and "does not broadcast" in error.msg
    # a scale that is not a finite number is written into the built code as a float too
    tiny = specnet.build(spec.replace("scale: 0.5", "scale: -.inf"))
    want = F.scaled_dot_product_attention(
        q, kv, kv, attn_mask=keep.view(3, 1, 1, 5), scale=float("-inf")
    )
    torch.testing.assert_close(tiny(q, kv, keep), want, equal_nan=True)
