"""Checkpoints: resuming after kill -9 reaches the same weights; writes are atomic; checkpoints
of the first layout still resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from specnet import Trainer
from specnet._cli.main import main
from specnet._train import checkpoint as _checkpoint
from specnet._train.checkpoint import Checkpointer, latest_checkpoint, load_state, save_checkpoint
from specnet._train.errors import CheckpointError

# Digits with dropout (so the random state matters), 23 batches per epoch, 3 epochs. One thread
# fixed: a resumed run is compared bit for bit with an uninterrupted one, and float results
# depend on the thread count, which threads: auto measures in each run afresh (one run chose 2,
# the other 1, on a busy machine).
SPEC = """\
name: tiny
input: [1, 8, 8]
model:
  type: Sequential
  layers:
    flatten: Flatten
    fc1: {type: Linear, out_features: 32}
    relu: ReLU
    drop: {type: Dropout, p: 0.2}
    fc2: {type: Linear, out_features: 10}
train:
  data: Digits
  batch_size: 64
  epochs: 3
  optimizer: {type: SGD, lr: 0.05, momentum: 0.9}
  schedule: {type: StepLR, step_size: 1, gamma: 0.5}
  metrics: [accuracy]
  threads: 1
"""

# Runs `specnet train` in a child process that SIGKILLs itself once `when` is true.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from specnet._train import checkpoint as _checkpoint
    from specnet._cli.main import main

    kill_step, where = int(sys.argv[1]), sys.argv[2]
    if where == "batch":
        original = _checkpoint.Checkpointer.on_batch_end

        def on_batch_end(self, trainer, loss):
            original(self, trainer, loss)
            if trainer.step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

        _checkpoint.Checkpointer.on_batch_end = on_batch_end
    else:  # die inside the rename that would complete the checkpoint of kill_step
        replace = os.replace

        def dying_replace(src, dst):
            if str(dst).endswith(f"step-{kill_step:06d}.pt"):
                os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)

        _checkpoint.os.replace = dying_replace
    sys.exit(main(sys.argv[3:]))
    """
)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _steps(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The spec and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("ref")
    spec = root / "tiny.yaml"
    spec.write_text(SPEC)
    out = root / "run"
    assert (
        main(
            [
                "train",
                str(spec),
                "--out",
                str(out),
                "--checkpoint-every",
                "5",
                "--log-every",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    return spec, out


@pytest.mark.parametrize(
    ("kill_step", "where"),
    [(33, "batch"), (30, "write")],
    ids=["mid-epoch", "during-checkpoint-write"],
)
def test_resume_after_kill_reaches_the_same_weights(
    reference: tuple[Path, Path], tmp_path: Path, kill_step: int, where: str
) -> None:
    spec, ref = reference
    out = tmp_path / "run"
    args = ["train", str(spec), "--out", str(out), "--checkpoint-every", "5", "--log-every", "4"]
    child = subprocess.run(
        [sys.executable, "-c", KILLER, str(kill_step), where, *args, "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not (out / "model.safetensors").exists()
    last = latest_checkpoint(out / "checkpoints")
    assert last is not None
    # Killed in epoch 2 (23 batches per epoch), after the checkpoint of step 30 or before it.
    assert last.step == (30 if where == "batch" else 25)
    state = load_state(last.state)
    assert 0 < state["batch_in_epoch"] < 23  # a mid-epoch checkpoint
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert where == "batch" or leftovers  # the torn write left only a temporary file

    assert main([*args[:1], "--resume", str(out), "--no-progress"]) == 0

    ref_w, got_w = _weights(ref), _weights(out)
    assert ref_w.keys() == got_w.keys()
    for k in ref_w:
        assert torch.equal(ref_w[k], got_w[k]), k
    for name in ("metrics.csv", "steps.csv"):
        steps = _steps(out / name)
        assert steps == sorted(set(steps)), f"{name} counts a step twice: {steps}"
        assert steps == _steps(ref / name)
    assert (out / "curves.png").stat().st_size > 0


def test_atomic_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch.nn.Linear(3, 2)
    state = {"step": 1, "note": "first"}
    save_checkpoint(tmp_path, model, state, "abc")
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    with torch.no_grad():
        model.weight.add_(1.0)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, {"step": 2, "note": "second"}, "abc")
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000001.json",
        "step-000001.pt",
        "step-000001.safetensors",
    ]
    assert load_state(tmp_path / "step-000001.pt", "abc") == state
    restored = torch.nn.Linear(3, 2)
    _checkpoint.load_weights(tmp_path / "step-000001.safetensors", restored, "abc")
    for k, v in before.items():
        assert torch.equal(restored.state_dict()[k], v)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_each_checkpoint_file_is_on_disk_before_its_name_and_its_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash at any moment leaves the old checkpoint or the new one: each file's bytes are
    # fsync'ed under its temporary name, then renamed, then the folder is fsync'ed.
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(tmp_path, torch.nn.Linear(3, 2), {"step": 1}, "abc")
    monkeypatch.undo()

    renamed = [i for i, (kind, _) in enumerate(events) if kind == "replace"]
    assert [Path(events[i][1]).name for i in renamed] == [
        "step-000001.safetensors",
        "step-000001.pt",
        "step-000001.json",
    ]
    start = 0
    for i in renamed:
        target = Path(events[i][1])
        synced = [Path(path) for kind, path in events[start:i] if kind == "fsync"]
        assert any(p.name.startswith(f".{target.name}.") for p in synced), events[start:i]
        assert events[i + 1] == ("fsync", str(tmp_path.resolve())), events[i:]
        start = i + 1


def test_old_checkpoints_are_pruned_and_states_load_weights_only(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, model, {"step": step, "t": torch.ones(2)}, None, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000010.json",
        "step-000010.pt",
        "step-000010.safetensors",
        "step-000015.json",
        "step-000015.pt",
        "step-000015.safetensors",
    ]
    # A state file holding an arbitrary object is refused by weights_only loading.
    bad = tmp_path / "step-000020.pt"
    torch.save({"format": 1, "trainer": {"x": os.stat_result((0,) * 10)}}, bad)
    (tmp_path / "step-000020.safetensors").write_bytes(
        (tmp_path / "step-000015.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="cannot read"):
        load_state(bad)


def test_checkpoint_of_another_spec_is_refused(
    reference: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ref = reference
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("out_features: 32", "out_features: 16"))
    assert main(["evaluate", str(other), "--checkpoint", str(ref)]) == 1
    err = capsys.readouterr().err
    assert "another model" in err and "model.safetensors" in err
    # Resuming a run with another spec is refused too, before any training.
    assert main(["train", str(other), "--resume", str(ref), "--no-progress"]) == 1
    assert "another model" in capsys.readouterr().err
    # The train section may differ: evaluating with other training settings is fine.
    same_model = tmp_path / "same.yaml"
    same_model.write_text(SPEC.replace("epochs: 3", "epochs: 7"))
    assert main(["evaluate", str(same_model), "--checkpoint", str(ref)]) == 0
    assert "accuracy" in capsys.readouterr().out


class _Stop(Exception):
    pass


def test_a_checkpoint_in_the_first_layout_resumes_to_the_same_weights(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    data = TensorDataset(x, (x[:, 0] > 0).long())

    def trainer(*callbacks: object) -> Trainer:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        return Trainer(
            model,
            optimizer={"type": "SGD", "lr": 0.1, "momentum": 0.9},
            schedule={"type": "StepLR", "step_size": 1, "gamma": 0.5},
            epochs=3,
            batch_size=8,
            device="cpu",
            log_every=2,
            callbacks=callbacks,
        )

    whole = trainer()
    whole.fit(data)

    def stop(t: Trainer, loss: torch.Tensor) -> None:
        if t.step == 7:  # mid-epoch: 5 steps an epoch
            raise _Stop

    cut = trainer(Checkpointer(tmp_path / "new", every=7))
    cut.on("on_batch_end", stop)
    with pytest.raises(_Stop):
        cut.fit(data)

    # The same checkpoint as the first layout wrote it.
    found = latest_checkpoint(tmp_path / "new")
    assert found is not None
    state = load_state(found.state)
    # The fields added since (thread count, best epoch, early stopping) take their defaults.
    later = ("threads", "monitor", "best", "best_epoch", "stopped_early")
    old = {k: v for k, v in state.items() if k not in (*_LAYOUT_2_ONLY, *later)}
    old["sums"] = [state[k] for k in _LAYOUT_2_ONLY[:4]]
    old["rng"], old["rng_per_rank"] = state["rng_per_rank"][0], []
    assert set(old) == {
        "world_size",
        "epoch",
        "batch_in_epoch",
        "step",
        "optimizer",
        "scheduler",
        "scaler",
        "history",
        "log",
        "sums",
        "rng",
        "rng_per_rank",
        "data_seed",
        "epoch_seconds",
    }
    first = tmp_path / "old"
    first.mkdir()
    (first / found.weights.name).write_bytes(found.weights.read_bytes())
    payload = {"format": 1, _checkpoint.HASH_KEY: None, "trainer": old, "options": {}}
    torch.save(payload, first / found.state.name)

    for folder in ("new", "old"):
        resumed = trainer(Checkpointer(tmp_path / folder))
        assert resumed.callbacks[0].resume(resumed) is not None  # type: ignore[attr-defined]
        assert (resumed.step, resumed.batch_in_epoch) == (7, 2)
        resumed.fit(data)
        for key, value in whole.model.state_dict().items():
            assert torch.equal(resumed.model.state_dict()[key], value), (folder, key)
        assert [r["train_loss"] for r in resumed.history] == [
            r["train_loss"] for r in whole.history
        ]
        assert resumed.log == whole.log


_LAYOUT_2_ONLY = (
    "epoch_loss",
    "epoch_batches",
    "interval_loss",
    "interval_batches",
    "rng_per_rank",
)
