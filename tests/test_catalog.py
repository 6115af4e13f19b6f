"""The generated catalog of torch classes stays true to the installed torch."""

from __future__ import annotations

import inspect

import torch

from specnet._front.registry import catalog, layers, losses, optimizers, schedulers
from tools import catalog_gen as _catalog_gen

CATALOG = _catalog_gen.CATALOG_PATH


def test_committed_catalog_matches_the_pinned_torch() -> None:
    """Regenerating from torch's signatures reproduces the committed file exactly.

    The file is generated for one torch version (the one pinned in constraints.txt);
    with another torch, the structural test below still holds.
    """
    data = catalog()
    installed = torch.__version__.split("+")[0]
    if data["torch"] == installed:
        assert _catalog_gen.dumps(_catalog_gen.generate()) == CATALOG.read_text("utf-8"), (
            "specnet/_front/catalog.json is stale: run python -m tools.catalog_gen"
        )
    else:
        assert data["torch"] == "2.14.1"


def test_every_catalog_entry_exists_in_torch_with_those_arguments() -> None:
    for reg, module in (
        (layers(), torch.nn),
        (losses(), torch.nn),
        (optimizers(), torch.optim),
        (schedulers(), torch.optim.lr_scheduler),
    ):
        for name, t in reg.items():
            if t.kind == "op":
                continue
            cls = getattr(module, name)
            assert issubclass(t.build_target(), cls)
            sig = inspect.signature(cls.__init__)
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            for p in t.params:
                assert accepts_any or p.name in sig.parameters, f"{name}.{p.name}"


def test_layers_cover_torch_nn() -> None:
    reg = layers()
    for name in (
        "Conv2d",
        "Linear",
        "ReLU",
        "Flatten",
        "MaxPool2d",
        "BatchNorm2d",
        "LSTM",
        "Embedding",
        "TransformerEncoderLayer",
        "TransformerEncoder",
        "Softmax",
        "Dropout",
        "ConvTranspose2d",
        "AdaptiveAvgPool2d",
        "LayerNorm",
        "Upsample",
    ):
        assert name in reg
    for name in ("Sequential", "ModuleList", "Module", "LazyLinear", "CrossEntropyLoss"):
        assert name not in reg
    assert "CrossEntropyLoss" in losses() and "MSELoss" in losses()
    assert {"SGD", "Adam", "AdamW", "RMSprop"} <= set(optimizers())
    assert {"StepLR", "CosineAnnealingLR", "OneCycleLR"} <= set(schedulers())


def test_every_layer_argument_is_documented_and_typed() -> None:
    for t in layers().values():
        assert t.doc, t.name
        for p in t.params:
            assert p.doc, f"{t.name}.{p.name}"
            assert p.type != "any", f"{t.name}.{p.name}"
