"""`specnet export --format python` of zoo models that use the newer constructs: learned
tensors, positions, masks, keyword inputs, StochasticDepth, training outputs, tables and
variants. The exported module loads the built model's weights and computes the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import specnet
from specnet._build.export import python_source

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"

CASES = [
    # file, variant, also compared in training mode (attention dropout is written inline,
    # a literal that cannot be switched off for a deterministic comparison)
    ("gpt2.yaml", "tiny", False),  # Parameters, MatMul, Arange, causal attention
    ("bert.yaml", "tiny", False),  # token types, a padding mask input, pooler
    ("googlenet.yaml", None, True),  # train_output: auxiliary heads in training only
    ("efficientnet.yaml", "efficientnet_b0", True),  # StochasticDepth, tables
    ("convnext.yaml", "convnext_tiny", True),  # layer scale as a learned tensor, permutes
    ("regnet.yaml", "regnet_y_400mf", True),  # names with '-', squeeze-and-excitation
]


def _inputs(spec: specnet.Spec, gen: torch.Generator) -> list[torch.Tensor]:
    out = []
    for name, t in spec.inputs.items():
        shape = (1, *t.shape) if t.batch else t.shape
        if t.dtype == "bool":
            out.append(torch.rand(shape, generator=gen) > 0.2)
        elif t.dtype.startswith("int"):
            out.append(torch.randint(0, 2 if "type" in name else 50, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen))
    return out


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in _tensors(v)]


@pytest.mark.parametrize(("file", "variant", "training"), CASES, ids=[c[0] for c in CASES])
def test_exported_zoo_model_is_the_built_one(
    file: str, variant: str | None, training: bool
) -> None:
    spec = specnet.load(ZOO / file, variant=variant)
    namespace: dict[str, Any] = {}
    exec(compile(python_source(spec), f"<exported {file}>", "exec"), namespace)
    exported = namespace["Model"]()
    built = specnet.build(spec)
    assert list(exported.state_dict()) == list(built.state_dict())
    exported.load_state_dict(built.state_dict(), strict=True)
    inputs = _inputs(spec, torch.Generator().manual_seed(0))
    with torch.no_grad():
        # eval, then (where it can be compared) training with dropout and stochastic depth off
        for mode in (False, True)[: 1 + training]:
            for m in (built, exported):
                m.train(mode)
                for layer in m.modules():
                    for rate in ("p", "dropout", "dropout_p"):
                        if isinstance(getattr(layer, rate, None), float):
                            setattr(layer, rate, 0.0)
            got, want = _tensors(exported(*inputs)), _tensors(built(*inputs))
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w)
