"""Training a model with auxiliary heads: a Graph's ``train_output`` and ``train.loss_weights``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import specnet
from specnet._cli.main import main

SPEC = """\
input: [8]
model:
  type: Graph
  nodes:
    h: {type: Linear, out_features: 8}
    out: {type: Linear, out_features: 3}
    aux: {type: Linear, out_features: 3, input: h}
  output: out
  train_output: [out, aux]
train:
  data: {type: Synthetic, samples: 64, classes: 3}
  loss: CrossEntropyLoss
  optimizer: {type: SGD, lr: 0.5}
  epochs: 1
"""


def test_the_losses_of_all_training_outputs_are_weighted(tmp_path: Path) -> None:
    spec = tmp_path / "aux.yaml"
    spec.write_text(SPEC + "  loss_weights: [1.0, 0.3]\n", "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    trained = load_file(out / "model.safetensors")
    torch.manual_seed(0)
    initial = specnet.build(spec).state_dict()  # the seed of train: 0
    # the auxiliary head is trained through its weighted loss; in eval it is not called
    assert not torch.equal(trained["aux.weight"], initial["aux.weight"])
    assert not torch.equal(trained["out.weight"], initial["out.weight"])


@pytest.mark.parametrize(("weights", "given"), [("", "none"), ("  loss_weights: [1, 2, 3]\n", "3")])
def test_missing_or_miscounted_weights_are_a_located_error(
    tmp_path: Path, weights: str, given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "aux.yaml"
    spec.write_text(SPEC + weights, "utf-8")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train.loss_weights: the model returns 2 output(s) in training and loss_weights " in err
    assert f"gives {given}" in err
    assert "Traceback" not in err


def test_summary_counts_training_only_nodes_apart() -> None:
    summary = specnet.summary(SPEC)
    # h: 8 x 8, out: 8 x 3 in eval; the auxiliary head's 8 x 3 only in training
    assert summary.total_macs == 8 * 8 + 8 * 3
    assert summary.train_macs == 8 * 8 + 2 * 8 * 3
    assert "(112 in training)" in str(summary)
