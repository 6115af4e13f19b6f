"""What `specnet train` refuses before the first step, with a located or plain message: data
the loss cannot take, settings torch only rejects at a step, bad command-line values, run
folders that cannot be written; and how a run ends on a full disk or SIGTERM."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from specnet._cli.main import main
from specnet._train import checkpoint as _checkpoint
from specnet._train import runs as _runs
from specnet._train.checkpoint import latest_checkpoint, verified_checkpoint

SPEC = """\
input: [4]
model: {type: Linear, out_features: 3}
train:
  data: {type: TensorFile, path: DATA}
  batch_size: 8
  epochs: 2
  loss: CrossEntropyLoss
"""
LOSS_LINE = 7  # train.loss, where errors about the targets are located


def _data(folder: Path, y: torch.Tensor, name: str = "data.pt") -> None:
    g = torch.Generator().manual_seed(0)
    torch.save({"x": torch.randn(40, 4, generator=g), "y": y}, folder / name)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(SPEC.replace("DATA", str(tmp_path / "data.pt")))
    _data(tmp_path, torch.arange(40) % 3)
    return path


def _train(spec: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    out = spec.parent / "run"
    code = main(["train", str(spec), "--out", str(out), "--no-progress", "--overwrite", *args])
    return code, capsys.readouterr().err.splitlines()


LABELS = {
    "out of range": (
        torch.arange(40) % 9,
        "a label is 8, but the model gives 3 class scores per sample: CrossEntropyLoss needs "
        "labels in 0..2 (the labels go from 0 to 8)",
    ),
    "negative": (
        torch.arange(40) % 3 - 1,
        "a label is -1, but the model gives 3 class scores per sample: CrossEntropyLoss needs "
        "labels in 0..2 (the labels go from -1 to 1)",
    ),
    "int32": (
        (torch.arange(40) % 3).int(),
        "CrossEntropyLoss needs int64 class labels, got int32 ones; store the labels as int64 "
        "(torch.long)",
    ),
    "float": (
        (torch.arange(40) % 3).float(),
        "CrossEntropyLoss needs class labels (int64, shaped [8] for this batch), or, for "
        "CrossEntropyLoss, class probabilities shaped like the output [8, 3]; got float32 "
        "targets of shape [8]",
    ),
    "wrong shape": (
        (torch.arange(80) % 3).reshape(40, 2),
        "CrossEntropyLoss needs one class label per sample, shaped [8] for this batch (the "
        "output [8, 3] without its class dimension 1); got labels of shape [8, 2]",
    ),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_labels_the_loss_cannot_take_are_located_at_the_loss(
    spec: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    labels, message = LABELS[case]
    _data(spec.parent, labels)
    code, err = _train(spec, capsys)
    assert code == 1
    assert err == [f"{spec}:{LOSS_LINE}:9: train.loss: TensorFile (train split): {message}"]
    assert not (spec.parent / "run" / "checkpoints").exists()


def test_labels_out_of_range_beyond_the_first_batch_are_found(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = torch.arange(40) % 3
    labels[-1] = 5  # in the last batch only
    _data(spec.parent, labels)
    code, err = _train(spec, capsys)
    assert code == 1 and "a label is 5" in err[0], err


def test_a_class_weight_of_the_wrong_length_is_located(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _train(spec, capsys, "--set", "train.loss={type: CrossEntropyLoss, weight: [1, 2]}")
    assert code == 1
    assert err[0].startswith(f"{spec}:{LOSS_LINE}:")
    assert "weight has 2 entries, but the model gives 3 class scores" in err[0]


def test_a_loss_that_is_not_one_number_is_refused_at_the_loss(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # reduction: none gives a loss per sample, which backward() cannot start from.
    _data(spec.parent, torch.arange(40) % 3)
    code, err = _train(
        spec, capsys, "--set", "train.loss={type: CrossEntropyLoss, reduction: none}"
    )
    assert code == 1
    assert err[0].startswith(f"{spec}:{LOSS_LINE}:")
    assert "gives a loss of shape [8] for a batch: training needs one number" in err[0]
    # Summed, it is one number and trains.
    code, err = _train(spec, capsys, "--set", "train.loss={type: CrossEntropyLoss, reduction: sum}")
    assert code == 0, err


def test_an_elementwise_loss_refuses_targets_that_would_broadcast(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One output per sample, targets [N] instead of [N, 1]: torch only warns and broadcasts.
    _data(spec.parent, torch.randn(40))
    code, err = _train(spec, capsys, "--set", "train.loss=MSELoss", "--set", "model.out_features=1")
    assert code == 1
    assert err[0].startswith(f"{spec}:{LOSS_LINE}:9: train.loss: TensorFile (train split): ")
    assert "output is [8, 1] for a batch but the targets are [8]" in err[0]
    # Shaped like the output, it trains.
    _data(spec.parent, torch.randn(40, 1))
    code, err = _train(spec, capsys, "--set", "train.loss=MSELoss", "--set", "model.out_features=1")
    assert code == 0, err


def test_a_garbage_tensor_file_is_a_plain_located_message(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec.parent / "data.pt").write_bytes(bytes(range(256)) * 8)
    code, err = _train(spec, capsys)
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"{spec}:4:")
    assert f"'{spec.parent / 'data.pt'}': it is not a file of tensors written by" in err[0]
    assert "Traceback" not in err[0] and "weights_only" not in err[0]


def test_a_batch_larger_than_the_data_is_refused(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _train(spec, capsys, "--set", "train.batch_size=64")
    assert code == 1
    assert err == [
        f"{spec}:5:15: train.batch_size: batch_size 64 is larger than TensorFile (train split), "
        "which has 40 samples: every epoch would be one batch of 40; set batch_size to at "
        "most 40"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "train.schedule={type: OneCycleLR, max_lr: 0.1, total_steps: 3}",
            "train.schedule: OneCycleLR fails at optimizer step 4 of the run's 10: ValueError: "
            "Tried to step 4 times. The specified number of total steps is 3",
        ),
        (
            "train.optimizer={type: LBFGS}",
            "train.optimizer: LBFGS fails at its first step: TypeError: LBFGS.step() missing 1 "
            "required positional argument: 'closure'",
        ),
    ],
    ids=["schedule", "optimizer"],
)
def test_settings_that_fail_at_a_step_are_refused_before_training(
    spec: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    code, err = _train(spec, capsys, "--set", setting)
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"{spec}:"), err
    assert err[0].endswith(message), err
    assert not (spec.parent / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "args",
    [["--checkpoint-every", "-5"], ["--keep", "-1"], ["--log-every", "-2"], ["--keep", "two"]],
)
def test_bad_counts_on_the_command_line_are_usage_errors(
    spec: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(spec), *args])
    assert exit_.value.code == 2
    assert f"argument {args[0]}:" in capsys.readouterr().err


def test_keep_0_keeps_every_checkpoint(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _train(spec, capsys, "--keep", "0", "--checkpoint-every", "2")
    assert code == 0
    steps = sorted(p.name for p in (spec.parent / "run" / "checkpoints").glob("*.json"))
    assert steps == [f"step-{s:06d}.json" for s in (2, 4, 5, 6, 8, 10)]


def test_run_folders_that_cannot_be_written_are_refused_before_training(
    spec: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = spec.parent / "a_file"
    a_file.write_text("x")
    for out, message in [
        (a_file, f"the run folder {a_file} is a file, not a folder"),
        (a_file / "run", f"cannot create the run folder {a_file / 'run'}: {a_file} is a file"),
    ]:
        assert main(["train", str(spec), "--out", str(out), "--overwrite"]) == 1
        assert capsys.readouterr().err.splitlines() == [f"specnet train: {message}"]
    assert a_file.read_text() == "x"

    # A file system without room (for the checkpoints and the final weights).
    class Usage:
        free = 100

    monkeypatch.setattr(_runs.shutil, "disk_usage", lambda path: Usage)
    assert main(["train", str(spec), "--out", str(spec.parent / "full")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"specnet train: no space left on device for the run folder {spec.parent}"
    )
    assert "0.0 MiB free" in err
    assert not (spec.parent / "full").exists()


def test_a_read_only_run_folder_is_refused(
    spec: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only file system: writing the folder fails with EROFS.
    real = Path.write_bytes

    def read_only(self: Path, data: bytes) -> int:
        if self.parent == spec.parent / "ro":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, data)

    (spec.parent / "ro").mkdir()
    monkeypatch.setattr(Path, "write_bytes", read_only)
    assert main(["train", str(spec), "--out", str(spec.parent / "ro")]) == 1
    assert capsys.readouterr().err == (
        f"specnet train: cannot write the run folder {spec.parent / 'ro'}: read-only file "
        f"system ({spec.parent / 'ro'})\n"
    )


def test_a_full_disk_while_checkpointing_stops_plainly_and_the_run_resumes(
    spec: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = spec.parent / "ref"
    assert main(["train", str(spec), "--out", str(ref), "--checkpoint-every", "2"]) == 0
    out = spec.parent / "run"
    # The disk fills up in the middle of writing the state file of step 6.
    write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".step-000006.pt"):
            write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(_checkpoint.os, "write", full)
    args = ["train", str(spec), "--out", str(out), "--checkpoint-every", "2", "--no-progress"]
    assert main(args) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "specnet train: no space left on device writing the checkpoint of step 6 "
        f"({out / 'checkpoints' / 'step-000006.pt'}): training stopped; its partial files are "
        "removed and the checkpoint of step 5 and the earlier ones are kept"
    ), err
    assert "inline_container" not in err and "Traceback" not in err
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [f"step-{s:06d}.{e}" for s in (4, 5) for e in ("json", "pt", "safetensors")]
    assert not (out / "model.safetensors").exists()
    # With space again, the run resumes to the weights of an uninterrupted one.
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    from safetensors.torch import load_file

    a, b = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


SIGTERM_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from specnet._train import checkpoint as _checkpoint
    from specnet._cli.main import main

    original = _checkpoint.Checkpointer.on_batch_end

    def on_batch_end(self, trainer, loss):
        original(self, trainer, loss)
        if trainer.step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    _checkpoint.Checkpointer.on_batch_end = on_batch_end
    sys.exit(main(sys.argv[1:]))
    """
)


def test_sigterm_ends_the_run_with_a_message_and_a_checkpoint(spec: Path) -> None:
    out = spec.parent / "run"
    child = subprocess.run(
        [sys.executable, "-c", SIGTERM_CHILD, "train", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=spec.parent,
    )
    assert child.returncode == 143, child.stderr
    assert child.stderr.splitlines()[-1] == (
        "specnet train: stopped by SIGTERM at optimizer step 7 (epoch 2); the checkpoint of "
        f"step 7 is saved: continue with 'specnet train --resume {out}'"
    )
    assert "Traceback" not in child.stderr
    found = verified_checkpoint(out / "checkpoints")
    assert found is not None and found.step == 7
    assert latest_checkpoint(out / "checkpoints") == found
