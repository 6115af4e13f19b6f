"""Checkpoints you can trust: every file checked against its manifest before a resume; a torn,
damaged or mismatched newest checkpoint is skipped, naming the bad file, for the newest whole
one; runs killed at random points resume to the same weights."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specnet._cli.main import main
from specnet._train.checkpoint import (
    MANIFEST_KEY,
    Checkpoint,
    load_weights,
    save_checkpoint,
    verified_checkpoint,
)

# 40 samples in batches of 8: 5 optimizer steps an epoch, 3 epochs; dropout, so random
# states matter. A checkpoint every 2 steps and at each epoch's end, all kept. One thread
# fixed: the resumed run is compared bit for bit with another run, and float results depend on
# the thread count, which threads: auto measures in each run afresh.
SPEC = """\
input: [6]
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: 16}
    relu: ReLU
    drop: {type: Dropout, p: 0.2}
    fc2: {type: Linear, out_features: 3}
train:
  data: {type: TensorFile, path: DATA}
  batch_size: 8
  epochs: 3
  optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
  schedule: {type: StepLR, step_size: 1, gamma: 0.7}
  device: cpu
  threads: 1
"""
ARGS = ["--checkpoint-every", "2", "--keep", "0", "--log-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The spec and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("integrity")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, generator=g)
    torch.save({"x": x, "y": (x[:, 0] > 0).long() + (x[:, 1] > 0).long()}, root / "data.pt")
    spec = root / "net.yaml"
    spec.write_text(SPEC.replace("DATA", str(root / "data.pt")))
    out = root / "ref"
    assert main(["train", str(spec), "--out", str(out), *ARGS]) == 0
    return spec, out


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _older_weights(newest: Checkpoint, previous: Checkpoint) -> None:
    newest.weights.write_bytes(previous.weights.read_bytes())


DAMAGE: dict[str, tuple[Callable[[Checkpoint, Checkpoint], None], str]] = {
    "truncated weights": (
        lambda c, p: _truncate(c.weights),
        "step-000015.safetensors is damaged: {size} bytes, its manifest step-000015.json says",
    ),
    "truncated state": (
        lambda c, p: _truncate(c.state),
        "step-000015.pt is damaged: {size} bytes, its manifest step-000015.json says",
    ),
    "flipped weights": (
        lambda c, p: _flip_middle(c.weights),
        "step-000015.safetensors is damaged: its sha256 differs from the one in its manifest "
        "step-000015.json",
    ),
    "flipped state": (
        lambda c, p: _flip_middle(c.state),
        "step-000015.pt is damaged: its sha256 differs from the one in its manifest "
        "step-000015.json",
    ),
    "torn manifest": (
        lambda c, p: c.manifest.write_text(c.manifest.read_text()[:-9]),
        "step-000015.json is damaged (not a manifest)",
    ),
    "older weights": (
        _older_weights,
        "step-000015.safetensors is damaged: its sha256 differs from the one in its manifest",
    ),
    "missing manifest": (
        lambda c, p: c.manifest.unlink(),
        "step-000015.json is missing: the checkpoint's write did not finish",
    ),
    "missing weights": (lambda c, p: c.weights.unlink(), "step-000015.safetensors is missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_one(
    reference: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    _, ref = reference
    out = tmp_path / "run"
    # The run, as if stopped after epoch 3's end: its newest checkpoint is step 15's.
    shutil.copytree(ref, out)
    (out / "model.safetensors").unlink()
    folder = out / "checkpoints"
    newest, previous = (
        Checkpoint(s, folder / f"step-{s:06d}.safetensors", folder / f"step-{s:06d}.pt")
        for s in (15, 14)
    )
    hurt, expected = DAMAGE[damage]
    hurt(newest, previous)
    size = newest.weights.stat().st_size if newest.weights.exists() else 0
    if "state" in damage:
        size = newest.state.stat().st_size
    capsys.readouterr()

    # Resuming from step 14 (mid-epoch 3) trains step 15 again: the same final weights.
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith(f"specnet train: skipping checkpoint {folder / 'step-000015'}: ")
    assert expected.format(size=size) in first, err
    for text in ("Traceback", "SafetensorError", "miniz", "Please file an issue"):
        assert text not in err
    _same_weights(ref, out)


def test_damaged_weights_are_never_loaded_silently(
    reference: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, ref = reference
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes((ref / "model.safetensors").read_bytes())
    (run / "model.json").write_bytes((ref / "model.json").read_bytes())
    _flip_middle(run / "model.safetensors")
    assert main(["evaluate", str(spec), "--checkpoint", str(run), "--split", "train"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"specnet evaluate: cannot load weights {run / 'model.safetensors'}: model.safetensors "
        "is damaged: its sha256 differs from the one in its manifest model.json\n"
    )
    # Without a manifest, a file that is not whole is refused plainly too.
    (run / "model.json").unlink()
    _truncate(run / "model.safetensors")
    assert main(["evaluate", str(spec), "--checkpoint", str(run)]) == 1
    err = capsys.readouterr().err
    assert "is damaged (not a whole safetensors file)" in err and "Traceback" not in err


def test_checkpoints_without_a_manifest_still_resume(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    for step in (4, 8):
        save_checkpoint(tmp_path, model, {"step": step}, None, keep=0)
    # As the releases before manifests wrote them: no manifest, no flag in the state file.
    for step in (4, 8):
        stem = tmp_path / f"step-{step:06d}"
        stem.with_suffix(".json").unlink()
        payload = torch.load(stem.with_suffix(".pt"), weights_only=True)
        del payload[MANIFEST_KEY]
        torch.save(payload, stem.with_suffix(".pt"))
    found = verified_checkpoint(tmp_path)
    assert found is not None and found.step == 8
    load_weights(found.weights, torch.nn.Linear(3, 2))
    # What can be checked still is: a state file of another step is skipped.
    (tmp_path / "step-000008.pt").write_bytes((tmp_path / "step-000004.pt").read_bytes())
    skipped: list[str] = []
    found = verified_checkpoint(tmp_path, skipped.append)
    assert found is not None and found.step == 4
    assert skipped == [
        f"skipping checkpoint {tmp_path / 'step-000008'}: step-000008.pt holds the state of "
        "step 4, not of step 8"
    ]


# Runs `specnet train` in a child that SIGKILLs itself after the batch that ends optimizer
# step `kill`, or in the middle of writing a file of the checkpoint of that step.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from specnet._train import checkpoint as _checkpoint
    from specnet._cli.main import main

    kill, where = int(sys.argv[1]), sys.argv[2]
    if where == "batch":
        original = _checkpoint.Checkpointer.on_batch_end

        def on_batch_end(self, trainer, loss):
            original(self, trainer, loss)
            if trainer.step == kill and trainer.at_step_boundary:
                os.kill(os.getpid(), signal.SIGKILL)

        _checkpoint.Checkpointer.on_batch_end = on_batch_end
    else:  # where: the file's suffix; half of it reaches the disk
        write = _checkpoint.os.write

        def dying_write(fd, data):
            name = os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1]
            if name.startswith(f".step-{kill:06d}.{where}"):
                write(fd, bytes(data)[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return write(fd, data)

        _checkpoint.os.write = dying_write
    sys.exit(main(sys.argv[3:]))
    """
)

_POINTS = random.Random(20261201)
# Any step of the run (15) after the first checkpoint (step 2) may end a batch; checkpoints
# after it are written at steps 4, 5, 6, 8, ...
KILL_POINTS = sorted(
    [(s, "batch") for s in _POINTS.sample(range(3, 15), 6)]
    + [
        (s, _POINTS.choice(["safetensors", "pt", "json"]))
        for s in _POINTS.sample([4, 5, 6, 8, 10, 12, 14], 5)
    ]
)


@pytest.mark.parametrize(("kill", "where"), KILL_POINTS)
def test_a_run_killed_at_a_random_point_resumes_to_the_same_weights(
    reference: tuple[Path, Path], tmp_path: Path, kill: int, where: str
) -> None:
    spec, ref = reference
    out = tmp_path / "run"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            str(kill),
            where,
            "train",
            str(spec),
            "--out",
            str(out),
            *ARGS,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not (out / "model.safetensors").exists()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    _same_weights(ref, out)
    steps = [int(line.split(",")[1]) for line in (out / "steps.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 16))  # every step logged once
