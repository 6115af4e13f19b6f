"""The import campaign's tables and its check (used by tests/test_import.py and bench/imports.py).

Each model is built with random weights (nothing is downloaded), imported with
``specnet.from_module``'s machinery on an example input, and the spec is checked: it
validates, builds, has the module's state_dict keys in order and their shapes, loads the
module's weights with ``strict=True``, and gives the same eval outputs in float64 on a batch of
another size than the import's example. A refusal lists what the spec format cannot express.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import specnet
from specnet._import.api import Inputs, import_module, match

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

TORCHVISION_SIZES = {"inception_v3": 299}
"""Input sizes (height = width) where a model needs more than 64: its default otherwise."""
_FIXED_224 = ("vit_", "swin", "maxvit")


def torchvision_size(name: str) -> int:
    if name.startswith(_FIXED_224):
        return 224
    return TORCHVISION_SIZES.get(name, 64)


TIMM_SAMPLE = [
    # ResNet and ResNeXt, with squeeze-excitation and the deep stem
    "resnet18", "resnet50", "resnext50_32x4d", "seresnet50", "resnet50d", "regnetz_b16",
    # EfficientNet, MobileNet and other searched networks
    "efficientnet_b0", "tf_efficientnet_b0", "mobilenetv3_large_100", "mobilenetv3_small_100",
    "mobilenetv2_100", "mnasnet_100", "fbnetc_100", "spnasnet_100", "lcnet_050", "tinynet_a",
    "hardcorenas_a", "ghostnet_100", "rexnet_100", "mobileone_s0", "efficientvit_b0",
    # RegNet, RepVGG, GENet
    "regnetx_002", "regnety_002", "repvgg_a0", "gernet_s",
    # ConvNeXt, MetaFormer
    "convnext_atto", "convnextv2_atto", "poolformer_s12",
    # Vision transformers: ViT, DeiT, CaiT, BEiT, LeViT, Swin
    "vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224", "cait_xxs24_224", "beit_base_patch16_224", "levit_128s",
    "swin_tiny_patch4_window7_224",
    # MLP-Mixer, ResMLP
    "mixer_s16_224", "resmlp_12_224",
    # CSPNet, DenseNet, DLA, DPN, HRNet, Inception, Res2Net, SelecSLS, VGG, Xception, NFNet
    "cspresnet50", "cspdarknet53", "densenet121", "dla34", "dpn68", "hrnet_w18_small",
    "inception_v3", "res2net50_26w_4s", "selecsls42b", "vgg11", "xception41", "nfnet_l0",
]  # fmt: skip
"""At least 40 timm architectures across its families (random weights)."""

_TIMM_FIXED = ("vit", "deit", "mixer", "swin", "cait", "levit", "resmlp", "beit")


def timm_input(model: nn.Module, name: str) -> tuple[int, ...]:
    """timm's input size for the transformers (their position tables fix it), 96 otherwise."""
    if name.startswith(_TIMM_FIXED):
        return tuple(model.pretrained_cfg["input_size"])
    return (3, 96, 96)


@dataclass
class Outcome:
    """What importing one model gave."""

    name: str
    status: str
    """``exact``, ``refused``, ``differs`` or ``error``."""
    detail: str = ""
    lines: int = 0

    @property
    def exact(self) -> bool:
        return self.status == "exact"


def attempt(
    name: str, make: Callable[[], nn.Module], inputs: Callable[[nn.Module], Inputs]
) -> Outcome:
    """Imports ``make()`` and checks the round trip; never raises."""
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make()
        example = inputs(model)
        imported = import_module(model, example)
    except specnet.SpecImportError as exc:
        return Outcome(name, "refused", _reasons(exc))
    except Exception as exc:  # a bug, reported as such
        return Outcome(name, "error", f"{type(exc).__name__}: {exc}")
    lines = len(imported.text.splitlines())
    try:
        result = match(model, imported.text, example)
    except specnet.SpecError as exc:
        return Outcome(name, "error", f"the spec does not build: {str(exc).splitlines()[0]}", lines)
    return Outcome(name, "exact" if result.exact else "differs", str(result), lines)


def _reasons(exc: Any) -> str:
    """The distinct reasons of a refusal, first lines only."""
    seen: list[str] = []
    for p in exc.problems:
        reason = f"{p.cls.rsplit('.', 1)[-1]}: {p.message}"
        if reason not in seen:
            seen.append(reason)
    return "; ".join(seen[:3]) + (f"; and {len(seen) - 3} more" if len(seen) > 3 else "")


def torchvision_case(name: str) -> Outcome:
    import torchvision

    size = torchvision_size(name)
    return attempt(name, lambda: torchvision.models.get_model(name), lambda m: (3, size, size))


def timm_case(name: str) -> Outcome:
    import timm

    return attempt(
        name, lambda: timm.create_model(name, pretrained=False), lambda m: timm_input(m, name)
    )


def own_specs() -> list[tuple[Path, str | None]]:
    """Every spec in examples/ (and the zoo): its first variant where it has variants."""
    out: list[tuple[Path, str | None]] = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        variants = list(data.get("variants") or {})
        out.append((path, variants[0] if variants else None))
    return out


def spec_inputs(spec: specnet.Spec) -> Inputs:
    return dict(spec.inputs) if len(spec.inputs) > 1 else spec.input


def own_case(path: Path, variant: str | None) -> Outcome:
    """A spec built by specnet, imported back."""
    spec = specnet.load(path, variant=variant)
    name = path.relative_to(EXAMPLES).as_posix() + (f" ({variant})" if variant else "")
    return attempt(name, lambda: specnet.build(spec), lambda m: spec_inputs(spec))
