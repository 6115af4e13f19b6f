"""A run as users expect it: named splits, preprocessing that travels with the weights, the
best checkpoint and early stopping, run.json, TensorBoard events, readable files, a run folder
that loads back, and a clear message for a device that is not there."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits

import specnet
from specnet._cli.main import main
from specnet._front.trainspec import dataset_args
from specnet._train.data import _digits_splits, load_dataset
from specnet._train.runs import train_run

ROOT = Path(__file__).resolve().parent.parent

DIGITS = """\
name: digits
input: [1, 8, 8]
model:
  type: Sequential
  layers:
    flatten: Flatten
    fc1: {type: Linear, out_features: 32}
    relu: ReLU
    fc2: {type: Linear, out_features: 10}
train:
  data: {type: Digits, test_fraction: 0.2, val_fraction: 0.1}
  batch_size: 64
  epochs: 4
  optimizer: {type: Adam, lr: 0.01}
  metrics: [accuracy]
  threads: 1
"""


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` and its bytes: a run folder as it is."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    (folder / "digits.yaml").write_text(DIGITS, "utf-8")
    assert (
        main(["train", str(folder / "digits.yaml"), "--out", str(folder / "run"), "--no-progress"])
        == 0
    )
    return folder / "run"


# -- splits ---------------------------------------------------------------------------------


def test_digits_has_disjoint_stratified_train_validation_and_test_splits() -> None:
    spec = specnet.load(DIGITS)
    assert spec.train is not None and spec.train.data is not None
    found = {}
    for split in ("train", "val", "test"):
        data = load_dataset(spec.train.data, split, input=spec.inputs["input"])
        assert data is not None
        x, y = data.tensors  # type: ignore[attr-defined]
        found[split] = (x, y)
    sizes = {k: len(v[1]) for k, v in found.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    for _, y in found.values():  # stratified: every class in every split
        assert set(y.tolist()) == set(range(10))
    train_x = found["train"][0]  # standardised with the training split's statistics
    assert abs(train_x.mean().item()) < 1e-5 and abs(train_x.std().item() - 1) < 1e-4
    # disjoint, and together every sample
    index = _digits_splits(dataset_args(spec.train.data), seed=0).index
    numbers = [set(index[k].tolist()) for k in ("train", "val", "test")]
    assert sum(map(len, numbers)) == len(set.union(*numbers)) == 1797


def test_without_a_validation_split_the_columns_say_test(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("val_fraction: 0.1", "val_fraction: 0.0"), "utf-8")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    header = _rows(tmp_path / "run" / "metrics.csv")[0].keys()
    assert {"test_loss", "test_accuracy"} <= set(header)
    assert not any(k.startswith("val_") for k in header)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["evaluated"] == "test" and record["monitor"] == "test_loss"


def test_the_console_and_metrics_name_validation_and_test_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", "epochs: 2"), "utf-8")
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 0  # no bar: no tty
    out = capsys.readouterr()
    epochs = [line for line in out.err.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("val_loss" in e and "test" not in e for e in epochs)
    final = out.out.strip().splitlines()[-1]
    assert final.startswith("test loss ") and "test accuracy" in final
    rows = _rows(tmp_path / "run" / "metrics.csv")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    # the test figures are the test split's, not the last validation row's
    assert record["test"]["loss"] != pytest.approx(float(rows[-1]["val_loss"]), rel=1e-9)


# -- preprocessing, load_run, predict ---------------------------------------------------------


def test_the_run_records_the_normalisation_and_predict_applies_it(
    digits_run: Path, tmp_path: Path
) -> None:
    record = json.loads((digits_run / "run.json").read_text())
    pre = record["preprocess"]
    digits = load_digits()
    assert pre["type"] == "Normalize" and "0 to 16" in pre["input"]
    # the training split's statistics of raw pixel values (not of all samples, not 0..1)
    assert 3 < pre["mean"][0] < 7 and 4 < pre["std"][0] < 8
    raw = torch.from_numpy(digits.images).float().unsqueeze(1)
    torch.save(raw, tmp_path / "x.pt")
    spec = str(digits_run / "spec.yaml")
    args = ["predict", spec, "--checkpoint", str(digits_run), "--input", str(tmp_path / "x.pt")]
    assert main([*args, "--output", str(tmp_path / "y.pt")]) == 0
    assert main([*args, "--output", str(tmp_path / "raw.pt"), "--no-preprocess"]) == 0
    target = torch.from_numpy(digits.target)
    predicted = torch.load(tmp_path / "y.pt")
    accuracy = (predicted.argmax(1) == target).float().mean().item()
    assert accuracy > 0.9  # raw pixels in, the trained accuracy out

    module, loaded = specnet.load_run(digits_run)
    assert loaded.name == "digits" and not module.training
    bare, _ = specnet.load_run(digits_run, preprocess=False)
    assert set(bare.state_dict()) == set(module.model.state_dict())  # type: ignore[union-attr]
    normalised = (raw - pre["mean"][0]) / pre["std"][0]
    with torch.no_grad():
        assert torch.allclose(module(raw), predicted, atol=1e-6)  # load_run is predict
        assert torch.allclose(bare(normalised), predicted, atol=1e-5)
        assert torch.allclose(bare(raw), torch.load(tmp_path / "raw.pt"), atol=1e-6)


def test_load_run_gives_the_best_weights_and_refuses_a_folder_without_a_run(
    digits_run: Path, tmp_path: Path
) -> None:
    record = json.loads((digits_run / "run.json").read_text())
    rows = _rows(digits_run / "metrics.csv")
    losses = [float(r["val_loss"]) for r in rows]
    assert record["best"]["epoch"] == 1 + losses.index(min(losses))
    assert record["best"]["value"] == pytest.approx(min(losses), rel=1e-5)
    best, spec = specnet.load_run(digits_run, weights="best", preprocess=False)
    trainer = specnet.Trainer.from_spec(spec, model=best)
    assert spec.train is not None and spec.train.data is not None
    val = load_dataset(spec.train.data, "val", input=spec.inputs["input"])
    assert val is not None
    assert trainer.evaluate(val)["loss"] == pytest.approx(min(losses), rel=1e-5)
    with pytest.raises(specnet.SpecnetError, match="not a run folder"):
        specnet.load_run(tmp_path)


# -- best checkpoint, early stopping -------------------------------------------------------


def test_early_stopping_ends_the_run_and_says_so(tmp_path: Path) -> None:
    spec = specnet.load(
        DIGITS.replace("epochs: 4", "epochs: 30")
        + "  monitor: val_accuracy\n  early_stopping: 2\n  min_delta: 0.5\n"
    )
    result = train_run(spec, tmp_path / "run", progress=False)
    # nothing improves accuracy by 50 points after the first epoch: 1 + 2 epochs
    assert len(result.trainer.history) == 3
    assert result.record["stopped_early"] is True and result.record["mode"] == "max"
    assert result.record["best"]["epoch"] == 1


def test_a_monitor_of_a_split_the_run_does_not_evaluate_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("val_fraction: 0.1", "val_fraction: 0.0"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    spec.write_text(spec.read_text() + "  monitor: val_loss\n", "utf-8")
    assert main(["train", str(spec), "--out", str(out), "--no-progress", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "s.yaml:" in err and "train.monitor:" in err and "evaluates the test split" in err
    assert "Traceback" not in err
    # refused before the folder was touched: the earlier run is still whole
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("data", "monitor", "evaluated"),
    [
        ("{type: Digits, val_fraction: 0.0}", "val_loss", "test"),
        ("{type: Digits, val_fraction: 0.1}", "test_accuracy", "val"),
        ("{type: Synthetic, samples: 64, test_samples: 0}", "test_loss", None),
    ],
)
def test_validate_knows_the_split_a_data_set_evaluates_and_refuses_a_monitor_of_another(
    tmp_path: Path, data: str, monitor: str, evaluated: str | None
) -> None:
    # specnet validate (and pre-commit) see what specnet train would refuse.
    text = DIGITS.replace("{type: Digits, test_fraction: 0.2, val_fraction: 0.1}", data)
    text += f"  monitor: {monitor}\n"
    (error,) = specnet.validate(text)
    said = f"the {evaluated} split" if evaluated else "no split"
    assert "train.monitor:" in error and f"(this run evaluates {said})" in error
    # The run's own check, on the spec with the monitor put in past validation:
    spec = specnet.load(text.replace(f"  monitor: {monitor}\n", ""))
    train = spec.train.model_copy(update={"monitor": monitor})
    with pytest.raises(specnet.SpecValidationError) as refused:
        train_run(spec.model_copy(update={"train": train}), tmp_path / "run", progress=False)
    assert refused.value.errors[0].msg in error


def test_validate_leaves_a_monitor_to_the_run_where_only_the_data_tells_its_splits() -> None:
    text = DIGITS.replace(
        "{type: Digits, test_fraction: 0.2, val_fraction: 0.1}", "{type: TensorFile, path: t.pt}"
    )
    assert specnet.validate(text + "  monitor: val_loss\n") == []
    assert specnet.validate(text + "  monitor: test_loss\n") == []


def test_an_unknown_monitor_column_is_a_validation_error() -> None:
    errors = specnet.validate(DIGITS + "  monitor: val_acuracy\n")
    assert len(errors) == 1 and "did you mean 'val_accuracy'" in errors[0]


# -- run.json, files ----------------------------------------------------------------------------


def test_run_json_names_versions_device_seed_command_and_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "digits.yaml").write_text(DIGITS.replace("epochs: 4", "epochs: 1"), "utf-8")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "digits.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "spec"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["train", str(repo / "digits.yaml"), "--out", str(out), "--no-progress"]) == 0
    elapsed = time.perf_counter() - started
    record = json.loads((out / "run.json").read_text())
    assert 0 < record["train_seconds"] < elapsed  # the training, a part of the command
    assert record["specnet"] == specnet.__version__
    assert record["torch"] == torch.__version__
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["device"] == "cpu" and record["world_size"] == 1 and record["threads"] == 1
    assert record["seed"] == 0
    assert record["git"] == {"commit": head.stdout.strip(), "dirty": False}
    assert "specnet train" in record["command"] and "digits.yaml" in record["command"]
    assert set(record["test"]) == {"loss", "accuracy"}


def test_run_files_are_readable_by_the_group_and_others_as_the_umask_says(tmp_path: Path) -> None:
    spec = specnet.load(DIGITS.replace("epochs: 4", "epochs: 1"))
    before = os.umask(0o002)
    try:
        train_run(spec, tmp_path / "run", progress=False)
    finally:
        os.umask(before)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"model.safetensors", "best.safetensors", "run.json"}
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o664)}, modes


# -- TensorBoard ------------------------------------------------------------------------------


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
        EventAccumulator,
    )

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_losses_and_a_resume_keeps_no_step_twice(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS, "utf-8")
    out = tmp_path / "run"
    args = ["train", str(spec), "--out", str(out), "--no-progress", "--log-every", "5"]
    assert main([*args, "--logger", "tensorboard"]) == 0
    assert "tensorboard" in (out / "spec.yaml").read_text()  # a resume logs there too
    scalars = _scalars(out / "tensorboard")
    rows = _rows(out / "metrics.csv")
    val = scalars["epoch/val_loss"]
    assert [s for s, _ in val] == [int(r["step"]) for r in rows]
    assert [v for _, v in val] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-5)
    steps = _rows(out / "steps.csv")
    assert [s for s, _ in scalars["train/loss"]] == [int(r["step"]) for r in steps]

    # resume from the checkpoint of epoch 2 (the later ones removed): the events past it go
    checkpoints = sorted((out / "checkpoints").glob("step-*.json"))
    for manifest in checkpoints[1:]:
        for path in (out / "checkpoints").glob(manifest.stem + ".*"):
            path.unlink()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    again = _scalars(out / "tensorboard")
    assert [s for s, _ in again["epoch/val_loss"]] == [s for s, _ in val]


# -- devices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda:99", "cuda"])
def test_a_device_that_is_not_there_is_refused_before_anything_is_built(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if device == "cuda":  # a machine without CUDA (CI's), wherever the test runs
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS + f"  device: '{device}'\n", "utf-8")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    line = DIGITS.count("\n") + 1
    assert f"s.yaml:{line}:" in err and f"train.device: device '{device}': this machine has" in err
    assert "model.layers" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_first_setup_shows_pip_progress_and_how_long_it_takes(
    tmp_path: Path,
) -> None:
    # A stand-in python3 whose venv's pip prints pip's kind of lines: the script must pass them
    # on (with sizes) and say what the first run costs, then fail cleanly when pip fails.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cat > "$3/bin/python" <<EOF\n'
        "#!/bin/sh\n"
        "echo 'Collecting torch==2.14.1'\n"
        "echo '  Downloading torch-2.14.1-cp311-manylinux.whl (915.3 MB)'\n"
        "echo 'ERROR: no space left'\n"
        "exit 1\n"
        "EOF\n"
        'chmod +x "$3/bin/python"; fi\n',
        "utf-8",
    )
    (fake / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SPECNET_CACHE": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'env.sh'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "about 6.3 GB" in done.stderr and "minutes" in done.stderr
    assert "specnet: pip: Downloading torch-2.14.1-cp311-manylinux.whl (915.3 MB)" in done.stderr
    assert "installing the environment failed" in done.stderr


# -- imports -----------------------------------------------------------------------------------

_SEEN_AT_FIRST_STEP = """\
import json, sys
import specnet
from specnet._train import trainer
from specnet._train.runs import train_run

seen = {}
fit = trainer.Trainer.fit


def watched(self, *args, **kwargs):
    names = ("sklearn", "torchvision", "matplotlib", "tensorboard")
    seen.update({name: name in sys.modules for name in names})
    return fit(self, *args, **kwargs)


trainer.Trainer.fit = watched
train_run(specnet.load(sys.argv[1]), sys.argv[2], progress=False)
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("data", "imported"), [("Synthetic", set()), ("Digits", {"sklearn"})])
def test_a_run_imports_only_what_its_data_set_needs_before_training(
    tmp_path: Path, data: str, imported: set[str]
) -> None:
    spec = tmp_path / "s.yaml"
    text = DIGITS.replace("epochs: 4", "epochs: 1")
    if data == "Synthetic":
        text = text.replace(
            "{type: Digits, test_fraction: 0.2, val_fraction: 0.1}",
            "{type: Synthetic, samples: 64, classes: 10}",
        )
    spec.write_text(text, "utf-8")
    env = {**os.environ, "SPECNET_CACHE": str(tmp_path / "cache")}  # empty: a first run
    for run, expected in (("run", imported), ("again", set())):  # Digits' splits now cached
        done = subprocess.run(
            [sys.executable, "-c", _SEEN_AT_FIRST_STEP, str(spec), str(tmp_path / run)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env=env,
        )
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert {name for name, present in seen.items() if present} == expected
        assert (tmp_path / run / "curves.png").is_file()  # matplotlib came at the end


@pytest.mark.parametrize(
    ("fractions", "key"),
    [
        ("test_fraction: 0.2, val_fraction: 0.001", "val_fraction"),
        ("test_fraction: 0.002", "test_fraction"),
    ],
)
def test_digits_fractions_too_small_to_split_are_a_located_error(
    tmp_path: Path, fractions: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("test_fraction: 0.2, val_fraction: 0.1", fractions), "utf-8")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"train.data.{key}:" in err and "fewer than one per class" in err
    assert "Traceback" not in err


def test_the_default_digits_split_is_the_one_of_earlier_versions() -> None:
    # A v1 spec means what it meant: no validation split unless asked for, the same test split.
    spec = specnet.load(DIGITS.replace(", val_fraction: 0.1", ""))
    assert spec.train is not None and spec.train.data is not None
    args = {"input": spec.inputs["input"]}
    assert load_dataset(spec.train.data, "val", **args) is None
    train = load_dataset(spec.train.data, "train", **args)
    assert train is not None and len(train) == 1437  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("train.seed=5", "seed"),  # Digits' split drawn again: trained images in val and test
        ("train.data.val_fraction=0.3", "data"),
        ("train.batch_size=16", "batch_size"),
        ("train.optimizer.type=SGD", "optimizer"),  # torch: KeyError 'momentum' at the step
        ("train.threads=2", "threads"),  # the run's count is kept: spec.yaml would say 2
        ("train.epochs=1", "epochs"),  # the run has done 2
    ],
)
def test_a_resume_that_would_not_continue_the_run_is_refused_and_the_folder_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, key: str
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", "epochs: 2"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    before = _files(out)
    resume = ["train", "--resume", str(out), "--no-progress", "--set", "train.epochs=3"]
    assert main([*resume, "--set", change]) == 1
    err = capsys.readouterr().err
    assert f"train.{key}:" in err and "Traceback" not in err
    assert ("at least 2" if key == "epochs" else "continues the run exactly") in err
    assert _files(out) == before
    # the same resume without the change goes on
    assert main(resume) == 0
    assert json.loads((out / "run.json").read_text())["epochs"] == 3


def test_a_resume_compares_with_the_settings_the_checkpoint_trained_with_not_an_edited_spec_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --resume DIR reads DIR/spec.yaml; editing it does not change what the run was. The
    # recorded settings keep an infinite number (no clipping) as it is.
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", "epochs: 1\n  clip_grad_norm: .inf"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    recorded = out / "spec.yaml"
    text = recorded.read_text("utf-8")
    assert "batch_size: 64" in text and "epochs: 1" in text
    recorded.write_text(text.replace("batch_size: 64", "batch_size: 16"), "utf-8")
    before = _files(out)
    resume = ["train", "--resume", str(out), "--no-progress", "--set", "train.epochs=2"]
    assert main(resume) == 1
    err = capsys.readouterr().err
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "batch_size" in t)
    assert f"{recorded}:{line}:" in err and "train.batch_size:" in err, err
    assert "the run being resumed has batch_size 64, this spec 16" in err
    assert _files(out) == before
    recorded.write_text(text, "utf-8")  # as trained: the resume goes on
    assert main(resume) == 0
    assert json.loads((out / "run.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "data: {type: Digits, test_fraction: 0.2, val_fraction: 0.1}",
            "data: {type: Digits, val_fraction: 0.1}",
        ),  # the default written out
        ("optimizer: {type: Adam, lr: 0.01}", "optimizer: {type: Adam, lr: 0.01, eps: 1.0e-8}"),
        ("metrics: [accuracy]", "metrics: [accuracy]\n  mode: min"),  # val_loss's own mode
        ("threads: 1", "threads: 1\n  early_stopping: 5"),  # when to stop: may change
    ],
)
def test_a_resume_takes_a_spec_that_means_the_same(tmp_path: Path, before: str, after: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", "epochs: 1"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert before in spec.read_text()
    spec.write_text(spec.read_text().replace(before, after).replace("epochs: 1", "epochs: 2"))
    assert main(["train", str(spec), "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("schedule", "refused"),
    [
        ("CosineAnnealingLR", True),  # T_max is the run's epochs: torch keeps the saved one
        ("{type: OneCycleLR, max_lr: 0.01}", True),  # total_steps from epochs: torch would stop
        ("{type: CosineAnnealingLR, T_max: 4}", False),  # the spec's own length
    ],
)
def test_more_epochs_on_resume_are_refused_where_the_schedules_length_follows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schedule: str, refused: bool
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", f"epochs: 1\n  schedule: {schedule}"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    more = ["train", "--resume", str(out), "--no-progress", "--set", "train.epochs=2"]
    assert main(more) == (1 if refused else 0)
    err = capsys.readouterr().err
    assert ("its length follows train.epochs" in err) == refused and "Traceback" not in err


def test_a_resume_keeps_the_runs_start_and_its_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DIGITS.replace("epochs: 4", "epochs: 2"), "utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    first = json.loads((out / "run.json").read_text())
    more = ["--set", "train.epochs=3"]
    args = ["train", "--resume", str(out), "--no-progress"]
    # another monitor would compare an accuracy with a loss: refused, located
    assert main([*args, *more, "--set", "train.monitor=val_accuracy"]) == 1
    err = capsys.readouterr().err
    assert "train.monitor:" in err and "monitors val_loss, not val_accuracy" in err
    assert main([*args, *more]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == first["command"] and record["started"] == first["started"]
    assert len(record["resumed"]) == 1 and "--resume" in record["resumed"][0]["command"]
    assert record["epochs"] == 3
