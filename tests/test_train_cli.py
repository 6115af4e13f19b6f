"""`specnet train`, `evaluate` and `predict`: run folders, --set, and errors with exit codes."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from specnet._cli.main import main
from specnet._front.overrides import OverrideError, load_with_overrides, parse_override

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: small
input: [1, 8, 8]
model:
  type: Sequential
  layers:
    flatten: Flatten
    fc1: {type: Linear, out_features: 32}
    relu: ReLU
    fc2: {type: Linear, out_features: 10}
train:
  data: Digits
  batch_size: 32
  epochs: 2
  loss: CrossEntropyLoss
  optimizer: {type: Adam, lr: 0.01}
  metrics: [accuracy]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SPEC)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_main_job_digits_cnn_reaches_95_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", str(ROOT / "examples" / "digits_cnn.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"test accuracy (\d+\.\d+)%  wall time (\d+\.\d) s", printed)
    assert match, printed
    assert float(match.group(1)) >= 95.0
    rows = _rows(out / "metrics.csv")
    assert len(rows) == 15 and float(rows[-1]["val_accuracy"]) >= 0.95
    assert {p.name for p in out.iterdir()} == {
        "spec.yaml",
        "run.json",
        "metrics.csv",
        "steps.csv",
        "curves.png",
        "checkpoints",
        "best.safetensors",
        "best.json",
        "model.safetensors",
        "model.json",
    }


def test_train_writes_a_run_folder_with_overrides(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", str(spec), "--out", str(out), "--no-progress"]
    sets = ["--set", "train.epochs=1", "--set", "train.optimizer.lr=1e-3"]
    assert main([*args, *sets, "--set", "train.loss.label_smoothing=0.1"]) == 0
    resolved = yaml.safe_load((out / "spec.yaml").read_text())
    assert resolved["train"]["epochs"] == 1
    assert resolved["train"]["optimizer"] == {"type": "Adam", "lr": 0.001}
    assert resolved["train"]["loss"] == {"type": "CrossEntropyLoss", "label_smoothing": 0.1}
    assert "--set train.epochs=1" in (out / "spec.yaml").read_text().splitlines()[1]
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["step"] == "45"
    assert rows[0]["lr"] == "0.001"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    weights = load_file(out / "model.safetensors")
    assert set(weights) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    # A run folder is not started over by mistake; --overwrite replaces it.
    capsys.readouterr()
    assert main([*args, "--set", "train.epochs=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"specnet train: {out} holds a run (a checkpoint at step 45): --resume {out} "
        "continues it, --overwrite starts over in it"
    )
    assert main([*args, "--set", "train.epochs=2", "--overwrite"]) == 0
    assert len(_rows(out / "metrics.csv")) == 2
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "step-000045.json",
        "step-000045.pt",
        "step-000045.safetensors",
        "step-000090.json",
        "step-000090.pt",
        "step-000090.safetensors",
    ]
    capsys.readouterr()


def test_set_errors_are_located_in_the_file(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "run")
    assert main(["train", str(spec), "--out", out, "--set", "train.epocs=3"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:11:3: train.epocs: unknown train setting 'epocs'; did you mean 'epochs'? "
        "[set by --set train.epocs=3]"
    ]
    assert main(["train", str(spec), "--out", out, "--set", "train.optimizer.lr=fast"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:15:")
    assert "train.optimizer.lr" in err and "[set by --set train.optimizer.lr=fast]" in err
    assert main(["train", str(spec), "--out", out, "--set", "train.epochs"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", str(spec), "--out", out, "--set", "model.layers[9].x=1"]) == 2
    assert "cannot be indexed" in capsys.readouterr().err  # layers is a mapping here
    assert not Path(out).exists()  # nothing ran


def test_parse_override_reads_paths_and_yaml_values(tmp_path: Path) -> None:
    assert parse_override("train.optimizer.lr=1e-3").value == 0.001
    assert parse_override("model.layers[2].out_features=5").path == (
        "model",
        "layers",
        2,
        "out_features",
    )
    assert parse_override("model.layers.2.bias=no").path[2] == 2
    assert parse_override("model.layers.2.bias=no").value == "no"  # YAML 1.2: a string
    assert parse_override("input=[1, 8, 8]").value == [1, 8, 8]
    assert parse_override("train.schedule={type: StepLR, step_size: 2}").value == {
        "type": "StepLR",
        "step_size": 2,
    }
    with pytest.raises(OverrideError, match="must start with a name"):
        parse_override("[0]=1")
    path = tmp_path / "s.yaml"
    path.write_text(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Linear, out_features: 3}\n    - {type: Linear, out_features: 2}\n"
    )
    spec = load_with_overrides(path, ["model.layers[-1].out_features=7", "train.epochs=2"])
    assert spec.data["model"]["layers"][1]["out_features"] == 7
    assert spec.train.epochs == 2
    with pytest.raises(OverrideError, match="out of range"):
        load_with_overrides(path, ["model.layers[5].out_features=7"])


def test_data_that_does_not_fit_stops_before_training(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--set", "input=[1, 28, 28]"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:11:9: train.data: Digits (train split) gives samples of shape [1, 8, 8] "
        "(float32), but the spec's input is shape [1, 28, 28] (float32)"
    ]
    assert not (out / "checkpoints").exists()


def test_a_diverging_run_stops_with_a_message_and_keeps_good_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "data.pt"
    torch.save(
        {"x": torch.randn(64, 4, generator=g) * 10, "y": torch.randn(64, 1, generator=g)}, data
    )
    spec = tmp_path / "div.yaml"
    spec.write_text(
        "input: [4]\nmodel: {type: Linear, out_features: 1}\ntrain:\n"
        f"  data: {{type: TensorFile, path: {data}}}\n  batch_size: 4\n  epochs: 3\n"
        "  loss: MSELoss\n  optimizer: {type: SGD, lr: 0.1}\n"
    )
    out = tmp_path / "run"
    code = main(["train", str(spec), "--out", str(out), "--checkpoint-every", "2", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    found = re.search(
        r"the training loss is inf \(not finite\) in epoch (\d), "
        r"between optimizer steps (\d+) and (\d+); training stopped; "
        r"the last good checkpoint is (\S+)\n",
        err,
    )
    assert found, err
    first, last = int(found[2]), int(found[3])
    assert last - first == 1  # the loss is read (and checked) every 2 steps
    good = out / "checkpoints" / f"step-{first - 1:06d}.safetensors"
    assert found[4] == str(good)
    weights = load_file(good)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (out / "model.safetensors").exists()


def test_evaluate_and_predict(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    trained = capsys.readouterr().out
    assert main(["evaluate", str(spec), "--checkpoint", str(out)]) == 0
    evaluated = capsys.readouterr().out.strip()
    accuracy = re.search(r"accuracy (\d+\.\d+)%", evaluated)
    assert accuracy and f"test accuracy {accuracy.group(1)}%" in trained
    assert (
        main(["evaluate", str(spec), "--checkpoint", str(out / "checkpoints"), "--split", "train"])
        == 0
    )
    assert "accuracy" in capsys.readouterr().out

    inputs, preds = tmp_path / "x.pt", tmp_path / "preds.pt"
    torch.save({"x": torch.randn(5, 1, 8, 8)}, inputs)
    args = ["predict", str(spec), "--checkpoint", str(out / "model.safetensors")]
    assert main([*args, "--input", str(inputs), "--output", str(preds)]) == 0
    assert torch.load(preds, weights_only=True).shape == (5, 10)
    torch.save(torch.randn(5, 1, 7, 7), inputs)
    assert main([*args, "--input", str(inputs), "--output", str(preds)]) == 2
    assert (
        "samples of shape [1, 7, 7] (float32); the spec's input is [1, 8, 8]"
        in capsys.readouterr().err
    )


def test_usage_and_resume_errors(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert (
        main(["train", str(spec), "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
        == 2
    )
    spec_dir = tmp_path / "empty"
    spec_dir.mkdir()
    assert main(["train", str(spec), "--resume", str(spec_dir)]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    no_train = tmp_path / "bare.yaml"
    no_train.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    assert main(["train", str(no_train), "--out", str(tmp_path / "r")]) == 1
    assert "nothing to train on" in capsys.readouterr().err


def test_subcommand_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom specnet._cli.main import main\n"
        "for cmd in ('train', 'evaluate', 'predict'):\n"
        "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_torchs_own_checks_of_the_settings_are_located_in_the_file(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Validation cannot know that SGD's nesterov needs a momentum; torch's check says so.
    out = tmp_path / "run"
    sets = ["--set", "train.optimizer={type: SGD, lr: 0.1, nesterov: true}"]
    assert main(["train", str(spec), "--out", str(out), *sets]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:15:14: train.optimizer: SGD: Nesterov momentum requires a momentum and zero "
        "dampening"
    ]
    assert not (out / "checkpoints").exists()
