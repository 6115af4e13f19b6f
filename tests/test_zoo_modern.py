"""The modern CNN families of the zoo: EfficientNet, MobileNetV3, ConvNeXt and RegNet.

tests/test_zoo.py compares each of their table entries with torchvision's model (state_dict
keys, shapes, weights loaded with ``strict=True``, eval outputs). These tests check what an
eval comparison cannot see: the training-only behaviour (stochastic depth's per-block
probability and the training-mode forward), the learned layer scale's initial value, and
what the variant tables require.
"""

from __future__ import annotations

import pytest
import torch
from _zoo import CASES, EXAMPLES, Case, build, paired, source
from torch import nn

import specnet

pytest.importorskip("torchvision")

DEPTH_DROPPING = [c for c in CASES if c.spec in ("zoo/efficientnet.yaml", "zoo/convnext.yaml")]


def _stochastic_depth(model: nn.Module) -> dict[str, tuple[float, str]]:
    """``{name: (p, mode)}`` of the stochastic depth modules that the forward applies
    (torchvision's MBConv holds one even where it has no residual connection, unused)."""
    found = {}
    for name, module in model.named_modules():
        if type(module).__name__ != "StochasticDepth":
            continue
        parent = model.get_submodule(name.rpartition(".")[0])
        if getattr(parent, "use_res_connect", True):
            found[name] = (float(module.p), str(module.mode))
    return found


@pytest.mark.parametrize("case", DEPTH_DROPPING, ids=lambda c: c.id)
def test_stochastic_depth_grows_per_block_as_torchvision_computes_it(case: Case) -> None:
    ours = _stochastic_depth(build(case, "meta"))
    theirs = _stochastic_depth(source(case, "meta"))
    assert len(theirs) > 1
    assert ours == theirs  # the same names, the same p (exactly) and mode


@pytest.mark.parametrize("p", [0.0, 1.0], ids=["kept", "dropped"])
@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_tiny"])
def test_training_mode_matches_with_every_branch_kept_or_dropped(name: str, p: float) -> None:
    """In training mode (batch statistics), with dropout off and every residual branch kept
    (p = 0) or dropped (p = 1: each residual block passes its input through), both models
    compute the same thing: stochastic depth sits where torchvision's does and acts as it does."""
    (case,) = [c for c in CASES if c.id == name]
    ours, theirs = paired(case)
    for model in (ours, theirs):
        for module in model.modules():
            if type(module).__name__ == "StochasticDepth":
                setattr(module, "p", p)  # noqa: B010  (torchvision's or specnet's class)
            elif isinstance(module, nn.Dropout):
                module.p = 0.0
        model.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("variant", ["convnext_tiny", "convnext_small"])
def test_layer_scale_is_a_learned_tensor_of_one_millionth(variant: str) -> None:
    model = specnet.build(EXAMPLES / "zoo" / "convnext.yaml", variant=variant)
    scales = {k: p for k, p in model.named_parameters() if k.endswith(".layer_scale")}
    depths = [3, 3, 9, 3] if variant == "convnext_tiny" else [3, 3, 27, 3]
    assert len(scales) == sum(depths)
    first = scales["features.1.0.layer_scale"]
    assert first.shape == (96, 1, 1) and first.requires_grad
    assert scales["features.7.2.layer_scale"].shape == (768, 1, 1)
    for p in scales.values():
        assert torch.equal(p, torch.full_like(p, 1e-6))


def test_mobilenet_v3_needs_a_variant_for_its_table() -> None:
    with pytest.raises(specnet.SpecError, match="mobilenet_v3_small"):
        specnet.load(EXAMPLES / "zoo" / "mobilenet_v3.yaml")
