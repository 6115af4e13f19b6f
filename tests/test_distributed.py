"""Several processes on the CPU (gloo): the same weights as one process, resume after a rank dies."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from specnet import Trainer
from specnet._train.distributed import BatchOrder, loss_weight, shard

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

SPEC = """\
name: ddp
input: [6]
model:
  type: Sequential
  layers:
    fc1: {{type: Linear, out_features: 16}}
    relu: ReLU
    fc2: {{type: Linear, out_features: 3}}
train:
  data: {{type: TensorFile, path: {data}}}
  batch_size: {batch}
  epochs: {epochs}
  grad_accum_steps: {accum}
  optimizer: {{type: SGD, lr: 0.1, momentum: 0.9}}
  schedule: {{type: StepLR, step_size: 1, gamma: 0.7}}
  metrics: [accuracy]
  device: cpu
"""


def write_spec(folder: Path, *, n: int, batch: int, epochs: int, accum: int = 1) -> Path:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + 17, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    data = folder / "data.pt"
    torch.save({"x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}, data)
    spec = folder / "ddp.yaml"
    spec.write_text(SPEC.format(data=data, batch=batch, epochs=epochs, accum=accum))
    return spec


def specnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specnet", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """One run in one process and the same in two (``--nproc 2``).

    65 samples in batches of 16: the epoch's last batch has one sample, so the second process
    has no share of it; with 2 accumulated batches per step, the epoch ends on a lone batch.
    """
    folder = tmp_path_factory.mktemp("ddp")
    spec = write_spec(folder, n=65, batch=16, epochs=3, accum=2)
    one = specnet("train", str(spec), "--out", "one", "--log-every", "1", cwd=folder)
    assert one.returncode == 0, one.stderr
    two = specnet(
        "train", str(spec), "--out", "two", "--log-every", "1", "--nproc", "2", cwd=folder
    )
    assert two.returncode == 0, two.stderr
    return spec, folder / "one", folder / "two", two.stderr + two.stdout


def test_two_processes_reach_the_weights_of_one(runs: tuple[Path, Path, Path, str]) -> None:
    _, one, two, _ = runs
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    # The same steps and (reduced across the processes) the same losses and metrics.
    for name in ("metrics.csv", "steps.csv"):
        r1, r2 = rows(one / name), rows(two / name)
        assert [r["step"] for r in r2] == [r["step"] for r in r1]
        for x, y in zip(r1, r2, strict=True):
            for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
                if key in x:
                    assert float(y[key]) == pytest.approx(float(x[key]), rel=1e-4, abs=1e-6)
    assert [r["step"] for r in rows(one / "metrics.csv")] == ["3", "6", "9"]


def test_rank_zero_alone_writes_and_prints(runs: tuple[Path, Path, Path, str]) -> None:
    _, one, two, output = runs
    assert sorted(p.name for p in two.rglob("*")) == sorted(p.name for p in one.rglob("*"))
    assert output.count("epoch 1/3") == 1
    assert output.count("test accuracy") == 1
    header = (two / "spec.yaml").read_text().splitlines()[1]
    assert header.startswith("# specnet train ") and header.endswith("--nproc 2")


def test_resume_with_another_number_of_processes_is_refused(
    runs: tuple[Path, Path, Path, str],
) -> None:
    _, one, two, _ = runs
    alone = specnet("train", "--resume", str(two), cwd=two.parent)
    assert alone.returncode == 1
    assert (
        "written by 2 processes and this run has 1 process: resume it with 2 processes in all"
        in (alone.stderr)
    )
    assert "Traceback" not in alone.stderr
    more = specnet("train", "--resume", str(one), "--nproc", "2", cwd=one.parent)
    assert more.returncode == 1
    assert (
        "by 1 process and this run has 2 processes: resume it with 1 process in all" in more.stderr
    )
    assert "Traceback" not in more.stderr


def test_a_failing_run_in_two_processes_reports_once(tmp_path: Path) -> None:
    # BatchNorm1d with 66 samples in batches of 16: the last batch of 2 leaves each process
    # one sample, too few for batch statistics. Refused before training, without a traceback.
    spec = write_spec(tmp_path, n=66, batch=16, epochs=1)
    text = spec.read_text().replace("    relu: ReLU\n", "    bn: BatchNorm1d\n    relu: ReLU\n")
    spec.write_text(text)
    result = specnet("train", str(spec), "--out", "bn", "--nproc", "2", cwd=tmp_path)
    assert result.returncode == 1
    message = (
        "with 2 processes, a batch of 2 samples (of 66, in batches of 16) leaves a process 1 "
        "sample(s), and the model's BatchNorm layers need at least 2 per process"
    )
    assert result.stderr.count(message) == 1, result.stderr
    assert "2 of 2 processes failed (exit codes 1)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bn" / "checkpoints").exists()


def test_the_sum_of_a_loss_is_shared_exactly_too(tmp_path: Path) -> None:
    # reduction: sum, and a last batch of one sample (the second process gets a stand-in).
    spec = write_spec(tmp_path, n=33, batch=8, epochs=1)
    spec.write_text(spec.read_text() + "  loss: {type: CrossEntropyLoss, reduction: sum}\n")
    for out, extra in (("one", []), ("two", ["--nproc", "2"])):
        result = specnet("train", str(spec), "--out", out, "--no-progress", *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    a, b = (
        load_file(tmp_path / "one/model.safetensors"),
        load_file(tmp_path / "two/model.safetensors"),
    )
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5)


def test_nproc_must_be_positive(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n=20, batch=4, epochs=1)
    result = specnet("train", str(spec), "--nproc", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--nproc must be at least 1" in result.stderr


def test_a_spec_without_training_fails_once_under_torchrun(tmp_path: Path) -> None:
    # Rank 0 meets the error loading the data (it loads first); rank 1 waited for it, and
    # once reported a gloo RuntimeError with a traceback. Every rank now reaches the verdict.
    spec = tmp_path / "bare.yaml"
    spec.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    result = subprocess.run(
        [*TORCHRUN, "-m", "specnet", "train", str(spec), "--out", "run"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.count("nothing to train on") == 1, result.stderr
    assert_no_traceback(result.stderr)


def assert_no_traceback(stderr: str) -> None:
    """No process printed a traceback (torchrun itself prints one for a failed process)."""
    assert "RuntimeError" not in stderr, stderr
    assert stderr.count("Traceback") == stderr.count("errors.ChildFailedError: "), stderr


def test_data_that_rank_0_cannot_load_fails_once_under_nproc(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n=20, batch=4, epochs=1)
    (tmp_path / "data.pt").unlink()
    result = specnet("train", str(spec), "--out", "run", "--nproc", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("TensorFile: cannot read") == 1, result.stderr
    assert "2 of 2 processes failed (exit codes 1)" in result.stderr
    assert_no_traceback(result.stderr)


def test_labels_the_loss_cannot_take_fail_once_under_nproc(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n=20, batch=4, epochs=1)
    data = torch.load(tmp_path / "data.pt")
    data["y"] = data["y"] + 5  # beyond the model's 3 classes
    torch.save(data, tmp_path / "data.pt")
    result = specnet("train", str(spec), "--out", "run", "--nproc", "2", cwd=tmp_path)
    assert result.returncode == 1
    message = "train.loss: TensorFile (train split): a label is "
    assert result.stderr.count(message) == 1, result.stderr
    assert "but the model gives 3 class scores per sample" in result.stderr
    assert_no_traceback(result.stderr)
    assert not (tmp_path / "run" / "checkpoints").exists()


# One sample to evaluate on: rank 1's shard is empty, so rank 0 alone meets the metric that
# does not fit the model's outputs.
EVALUATE = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from specnet import Trainer

    trainer = Trainer(nn.Linear(3, 1), loss="MSELoss", metrics=["accuracy"], device="cpu")
    try:
        trainer.evaluate(TensorDataset(torch.randn(1, 3), torch.randn(1, 1)))
    except ValueError as exc:
        sys.stdout.write(f"rank {trainer.rank}: {exc}\\n")  # one write: the ranks share stdout
    """
)


def test_an_error_in_one_process_is_raised_in_every_one(tmp_path: Path) -> None:
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE)
    result = subprocess.run(
        [*TORCHRUN, str(script)], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    message = "metric 'accuracy' needs class scores [batch, classes, ...] and class-index targets"
    ranks = re.findall(rf"rank (\d): {re.escape(message)}", result.stdout)
    assert sorted(ranks) == ["0", "1"], result.stdout


# Trains under torchrun; the process of rank 1 SIGKILLs itself after optimizer step `kill`.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from specnet._train import checkpoint as _checkpoint
    from specnet._cli.main import main

    kill = int(sys.argv[1])
    original = _checkpoint.Checkpointer.on_batch_end

    def on_batch_end(self, trainer, loss):
        original(self, trainer, loss)
        if trainer.rank == 1 and trainer.at_step_boundary and trainer.step == kill:
            os.kill(os.getpid(), signal.SIGKILL)

    _checkpoint.Checkpointer.on_batch_end = on_batch_end
    sys.exit(main(sys.argv[2:]))
    """
)


def test_resume_after_one_rank_is_killed(tmp_path: Path) -> None:
    # Dropout: each process's random state matters. 400 samples in batches of 8: 50 steps an
    # epoch; the kill comes in the second epoch, 10 steps after a checkpoint.
    spec = write_spec(tmp_path, n=400, batch=8, epochs=3)
    text = spec.read_text().replace(
        "    relu: ReLU\n", "    relu: ReLU\n    drop: {p: 0.3, type: Dropout}\n"
    )
    spec.write_text(text)
    train = ["train", str(spec), "--checkpoint-every", "20", "--log-every", "5", "--no-progress"]

    whole = subprocess.run(
        [*TORCHRUN, "-m", "specnet", *train, "--out", "whole"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert whole.returncode == 0, whole.stderr

    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    killed = subprocess.run(
        [*TORCHRUN, str(killer), "70", *train, "--out", "cut"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode != 0
    cut = tmp_path / "cut"
    assert not (cut / "model.safetensors").exists()
    saved = sorted(p.name for p in (cut / "checkpoints").glob("step-*.pt"))
    assert saved[-1] == "step-000060.pt", saved  # rank 0 wrote it before step 61 could run

    resumed = specnet("train", "--resume", str(cut), "--nproc", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(cut / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert rows(cut / "metrics.csv") == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(
            rows(tmp_path / "whole" / "metrics.csv"), rows(cut / "metrics.csv"), strict=True
        )
    ]
    steps = [int(r["step"]) for r in rows(cut / "steps.csv")]
    assert steps == list(range(5, 151, 5))  # every step logged once


# The Python API under torchrun: a hand-written module, no spec.
SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from specnet import Trainer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 1))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(90, 5, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    trainer = Trainer(model, loss="MSELoss", optimizer={"type": "Adam", "lr": 0.01},
                      batch_size=20, epochs=2, device="cpu", metrics=["mae"])
    history = trainer.fit(data, data)
    if trainer.rank == 0:
        torch.save({"state": model.state_dict(), "history": history,
                    "world": trainer.world_size}, sys.argv[1])
    """
)


def test_trainer_on_any_module_under_torchrun(tmp_path: Path) -> None:
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    two = subprocess.run(
        [*TORCHRUN, str(script), str(tmp_path / "two.pt")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    one = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one.pt")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "two.pt", weights_only=True)
    assert (a["world"], b["world"]) == (1, 2)
    for key, value in a["state"].items():
        torch.testing.assert_close(b["state"][key], value, rtol=1e-5, atol=1e-6)
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert rb["val_mae"] == pytest.approx(ra["val_mae"], rel=1e-5)


# -- the pieces, in one process ----------------------------------------------------------------


@pytest.mark.parametrize("n,batch", [(65, 16), (64, 16), (7, 8), (3, 8)])
def test_the_shards_of_a_batch_make_the_batch(n: int, batch: int) -> None:
    def batches(world: int, rank: int, epoch: int) -> list[list[int]]:
        order = BatchOrder(n, batch, seed=5, shuffle=True, world=world, rank=rank, pad=False)
        order.epoch = epoch
        return list(order)

    for epoch in range(3):
        whole = batches(1, 0, epoch)
        assert sorted(i for b in whole for i in b) == list(range(n))
        for world in (2, 3):
            parts = [batches(world, r, epoch) for r in range(world)]
            joined = [
                [i for p in parts for i in (p[b] if b < len(p) else [])] for b in range(len(whole))
            ]
            assert joined == whole
    assert batches(1, 0, 0) == batches(1, 0, 0)  # a pure function of seed and epoch
    assert batches(1, 0, 0) != batches(1, 0, 1) or n < 4


def test_padding_and_weights_of_a_short_last_batch() -> None:
    order = BatchOrder(17, 8, seed=0, shuffle=False, world=2, rank=1)
    assert list(order) == [[4, 5, 6, 7], [12, 13, 14, 15], [16]]  # a stand-in, weighted 0
    assert loss_weight(17, 8, 2, world=2, rank=1) == 0
    assert loss_weight(17, 8, 2, world=2, rank=0) == 2
    for world in (2, 3, 4):
        for batch in (1, 5, 8):
            assert sum(loss_weight(21, 8, 2, world, r) for r in range(world)) == pytest.approx(
                world
            )
            assert sum(e - s for s, e in (shard(batch, world, r) for r in range(world))) == batch
    skipped = BatchOrder(17, 8, seed=0, shuffle=True)
    skipped.skip = 1
    assert list(skipped) == list(BatchOrder(17, 8, seed=0, shuffle=True))[1:]


class _Samples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style data set read one sample at a time (through a DataLoader); notes the reads."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data
        self.read: set[int] = set()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.read.add(i)
        x, y = self.data[i]
        return x, y


class _Doubled(TensorDataset):
    """A TensorDataset that reads its samples its own way: inputs doubled."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x, y = super().__getitem__(i)
        return x * 2, y


def test_tensors_on_the_device_are_batched_by_indexing_and_train_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A TensorDataset already on the training device (the CPU here) is cut into batches by
    # indexing, as data_on_device does, not read sample by sample and collated: the same
    # batches, so the same weights to the bit, in training, evaluation and prediction. A
    # subclass with its own __getitem__ is read through it.
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()

    def fit(data: Any, **settings: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        trainer = Trainer(model, batch_size=8, epochs=2, device="cpu", threads=1, **settings)
        trainer.fit(data, data)
        return model.state_dict(), trainer.predict(data)

    per_sample = _Samples(TensorDataset(x, y))
    read: list[int] = []
    rows = TensorDataset.__getitem__

    def counted(self: TensorDataset, i: int) -> tuple[torch.Tensor, ...]:
        read.append(i)
        return rows(self, i)

    a, pa = fit(per_sample)
    monkeypatch.setattr(TensorDataset, "__getitem__", counted)
    b, pb = fit(TensorDataset(x, y))
    c, pc = fit(TensorDataset(x, y), data_on_device=True)
    assert per_sample.read == set(range(50)) and not read
    for key in a:
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
    assert torch.equal(pa, pb) and torch.equal(pa, pc)
    monkeypatch.undo()
    doubled, p_doubled = fit(_Doubled(x, y))
    twice, p_twice = fit(_Samples(TensorDataset(x * 2, y)))
    for key in doubled:
        assert torch.equal(doubled[key], twice[key])
    assert torch.equal(p_doubled, p_twice)
