"""``train.init_from``: a new run starts from a safetensors or torch.save state_dict, or from a
torchvision weights name (read from torch's hub cache, where a download would put it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

import specnet
from specnet._train.runs import train_run
from specnet._train.weights import load_initial_weights

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
input: [6]
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: 5}
    relu: ReLU
    fc2: {type: Linear, out_features: 3}
train:
  data: {type: Synthetic, samples: 32, test_samples: 8, classes: 3}
  batch_size: 8
  optimizer: {type: SGD, lr: 0.0}
  threads: 1
"""


def _other_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)  # not the run's seed: other weights than the run would start from
    return {k: v.clone() for k, v in specnet.build(SPEC).state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_a_run_starts_from_a_weights_file_relative_to_the_spec(tmp_path: Path, suffix: str) -> None:
    weights = _other_weights()
    if suffix == ".safetensors":
        save_file(weights, tmp_path / f"start{suffix}")
    elif suffix == ".pth":  # as Lightning saves it, around the state_dict
        torch.save({"state_dict": weights, "epoch": 3}, tmp_path / f"start{suffix}")
    else:
        torch.save(weights, tmp_path / f"start{suffix}")
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC + f"  init_from: start{suffix}\n", "utf-8")
    train_run(specnet.load(spec), tmp_path / "run", progress=False)
    final = load_file(tmp_path / "run" / "model.safetensors")  # lr 0: the weights it started from
    assert set(final) == set(weights)
    assert all(torch.equal(final[k], weights[k]) for k in weights)


def test_a_file_of_another_model_is_a_located_error_naming_the_differences(
    tmp_path: Path,
) -> None:
    weights = _other_weights()
    weights["fc3.weight"] = weights.pop("fc2.weight")
    weights["fc1.bias"] = torch.zeros(7)
    save_file(weights, tmp_path / "other.safetensors")
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC + "  init_from: other.safetensors\n", "utf-8")
    with pytest.raises(specnet.SpecValidationError) as info:
        train_run(specnet.load(spec), tmp_path / "run", progress=False)
    text = str(info.value)
    assert "net.yaml:13:" in text and "train.init_from:" in text
    assert "missing keys: fc2.weight" in text and "unexpected keys: fc3.weight" in text
    assert "other shapes: fc1.bias [7] for [5]" in text
    assert not (tmp_path / "run" / "run.json").exists()  # refused before the run started


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"not a checkpoint", "not a state_dict written by torch.save"), (None, "no such file")],
)
def test_an_unreadable_or_missing_file_is_a_located_error(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    if content is not None:
        (tmp_path / "w.pt").write_bytes(content)
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC + "  init_from: w.pt\n", "utf-8")
    with pytest.raises(specnet.SpecValidationError, match=why):
        train_run(specnet.load(spec), tmp_path / "run", progress=False)


def test_a_pickle_that_is_more_than_weights_is_refused(tmp_path: Path) -> None:
    torch.save({"fc1.weight": torch.zeros(5, 6), "evil": Path("x")}, tmp_path / "w.pt")
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC + "  init_from: w.pt\n", "utf-8")
    with pytest.raises(
        specnet.SpecValidationError, match="holding more than tensors and plain values"
    ):
        train_run(specnet.load(spec), tmp_path / "run", progress=False)


def test_torchvision_weights_are_read_where_their_download_puts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No network: the file a download of ResNet18_Weights.IMAGENET1K_V1 would write is put in
    # torch's hub cache, and torchvision's own loading code reads it from there.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(7)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, cache / Path(weights.url).name)
    spec = specnet.load(ROOT / "examples" / "zoo" / "resnet.yaml", variant="resnet18")
    model = specnet.build(spec)
    load_initial_weights(model, "ResNet18_Weights.IMAGENET1K_V1", spec)
    loaded = model.state_dict()
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    # a name torchvision does not have is an error at the setting, not a traceback
    with pytest.raises(specnet.SpecValidationError, match="not a torchvision weights name"):
        load_initial_weights(model, "ResNet18_Weights.NOPE", spec)


def test_init_from_is_not_applied_when_a_run_resumes(tmp_path: Path) -> None:
    save_file(_other_weights(), tmp_path / "start.safetensors")
    spec = tmp_path / "net.yaml"
    spec.write_text(
        SPEC.replace("lr: 0.0", "lr: 0.1") + "  init_from: start.safetensors\n", "utf-8"
    )
    train_run(specnet.load(spec), tmp_path / "run", progress=False)
    after_one = load_file(tmp_path / "run" / "model.safetensors")
    (tmp_path / "start.safetensors").unlink()  # a resume reads its checkpoint, not init_from
    longer = specnet.load(spec.read_text().replace("batch_size: 8", "batch_size: 8\n  epochs: 2"))
    result = train_run(longer, tmp_path / "run", resume=True, progress=False)
    assert result.trainer.state.epoch == 2
    final = load_file(tmp_path / "run" / "model.safetensors")
    assert not torch.equal(final["fc1.weight"], after_one["fc1.weight"])
