"""The zoo's transformers (ViT, GPT-2, BERT) beyond the table's checks in tests/test_zoo.py.

The table (tests/_zoo.py) compares each spec variant with its source at one input; here the
same specs are compared where transformers differ from convolutional networks: sequences of
other lengths than the spec's ``input``, the other attention implementation of Hugging Face
(``eager``, a float mask added to the scores, against ``sdpa``), and padding masks.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
import torch
from _zoo import (
    CASES,
    TINY_BERT,
    TINY_GPT2,
    Case,
    assert_same_outputs,
    bert_inputs,
    bert_model,
    gpt2_model,
    paired,
)

import specnet

GPT2 = next(c for c in CASES if c.id == "gpt2-tiny")
BERT = next(c for c in CASES if c.id == "bert-tiny")


@pytest.mark.parametrize("length", [1, 5, 32])
def test_gpt2_runs_any_length_up_to_its_positions(length: int) -> None:
    """The spec's input has 16 tokens; the built model takes any length, as GPT2Model does."""
    case = replace(GPT2, input=(2, length))
    assert_same_outputs(case, *paired(case))


def test_gpt2_matches_eager_attention() -> None:
    case = replace(GPT2, source=partial(gpt2_model, attn_implementation="eager", **TINY_GPT2))
    assert_same_outputs(case, *paired(case))


def test_gpt2_is_causal() -> None:
    """Changing the last token changes only the last position's output."""
    ours, _ = paired(GPT2)
    ours.eval()
    ids = torch.randint(100, (1, 16), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 100
    with torch.no_grad():
        a, b = ours(ids), ours(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_bert_matches_both_attention_implementations(attn_implementation: str) -> None:
    source = partial(bert_model, attn_implementation=attn_implementation, **TINY_BERT)
    case = replace(BERT, source=source)
    assert_same_outputs(case, *paired(case))


def test_bert_ignores_padded_tokens() -> None:
    """Tokens where ``attention_mask`` is false change no output at the other positions."""
    ours, _ = paired(BERT)
    ours.eval()
    ids, types, mask = bert_inputs(100, 2, (2, 16), torch.Generator().manual_seed(4))
    assert not mask[1, 8:].any()  # the second sequence is padded from position 8
    changed = ids.clone()
    changed[1, 8:] = (ids[1, 8:] + 1) % 100
    with torch.no_grad():
        (a, pooled_a), (b, pooled_b) = ours(ids, types, mask), ours(changed, types, mask)
        unmasked, _ = ours(changed, types, torch.ones_like(mask))
    torch.testing.assert_close(a[:, :8], b[:, :8])
    torch.testing.assert_close(pooled_a, pooled_b)
    assert not torch.allclose(unmasked[1, :8], b[1, :8])


def test_transformer_cases_cover_every_variant() -> None:
    """Every variant of the three specs is in the table, compared by forward or on meta."""
    for spec in ("zoo/vit.yaml", "zoo/gpt2.yaml", "zoo/bert.yaml"):
        cases: list[Case] = [c for c in CASES if c.spec == spec]
        variants = specnet.load(cases[0].path).data["variants"]
        assert sorted(c.variant for c in cases if c.variant) == sorted(variants), spec
        assert any(c.how == "forward" for c in cases), spec
