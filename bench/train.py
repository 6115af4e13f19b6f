"""specnet.Trainer against the tutorials' hand-written loop and PyTorch Lightning.

    python bench/train.py [--samples 60000] [--repeats 5] [--threads 2] [--device auto]

One epoch of the tutorials' FashionMNIST MLP (Flatten, Linear 784-512, ReLU, 512-512, ReLU,
512-10; SGD lr 1e-3; batch 64; CrossEntropyLoss) on random data of FashionMNIST's shape,
shuffled by a DataLoader with num_workers=0, the same for everyone:

- hand:      the loop of "Optimizing Model Parameters" (zero_grad, forward, loss, backward,
             step; loss.item() every 100 batches, as the tutorial prints it);
- trainer:   specnet.Trainer on the same hand-written module, with its defaults;
- spec:      Trainer.from_spec(examples/fashion_mnist_mlp.yaml) with the model built from the
             spec (only the data swapped for the random tensors);
- lightning: a LightningModule with the same step, lightning.Trainer(max_epochs=1) with no
             logger, checkpoints, progress bar or model summary (needs `pip install lightning`,
             e.g. `pip install -e .[bench]`; skipped when missing).

Epoch times are medians over interleaved repeats (the order rotates every repeat), printed
with the ratio to the hand-written loop. Peak memory is measured once per contestant, each in
a fresh process: the peak resident set size (ru_maxrss) and tracemalloc's peak of Python
allocations during the epoch (after a warm-up epoch on a little data, so imports are not
counted), and how much the peak RSS grew during it; torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from seeds import NeuralNetwork  # bench/ is on sys.path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "fashion_mnist_mlp.yaml"
BATCH, LR = 64, 1e-3


def data(samples: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.rand(samples, 1, 28, 28, generator=g), torch.randint(0, 10, (samples,), generator=g)
    )


def loader(ds: TensorDataset, device: torch.device) -> DataLoader[Any]:
    return DataLoader(ds, batch_size=BATCH, shuffle=True, pin_memory=device.type == "cuda")


def run_hand(ds: TensorDataset, device: torch.device) -> None:
    torch.manual_seed(0)
    model = NeuralNetwork().to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    for batch, (X, y) in enumerate(loader(ds, device)):
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        optimizer.step()
        optimizer.zero_grad()
        if batch % 100 == 0:
            loss.item()  # the tutorial prints it here
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_trainer(ds: TensorDataset, device: torch.device) -> None:
    import specnet

    torch.manual_seed(0)
    trainer = specnet.Trainer(
        NeuralNetwork(),
        loss="CrossEntropyLoss",
        optimizer={"type": "SGD", "lr": LR},
        batch_size=BATCH,
        epochs=1,
        device=device,
    )
    trainer.fit(ds)


def run_spec(ds: TensorDataset, device: torch.device) -> None:
    import specnet

    spec = specnet.load(SPEC)
    trainer = specnet.Trainer.from_spec(spec, device=device, epochs=1, metrics=())
    trainer.fit(ds)


def run_lightning(ds: TensorDataset, device: torch.device) -> None:
    import lightning as L  # type: ignore[import-not-found,unused-ignore]

    class Module(L.LightningModule):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self.model = NeuralNetwork()
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            X, y = batch
            loss: torch.Tensor = self.loss_fn(self.model(X), y)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), loader(ds, device))
    if device.type == "cuda":
        torch.cuda.synchronize()


CONTESTANTS: dict[str, Callable[[TensorDataset, torch.device], None]] = {
    "hand": run_hand,
    "trainer": run_trainer,
    "spec": run_spec,
    "lightning": run_lightning,
}


def available() -> list[str]:
    names = list(CONTESTANTS)
    try:
        import lightning  # noqa: F401  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("lightning is not installed (pip install -e .[bench]); skipping it\n")
        names.remove("lightning")
    _quiet()
    return names


def _quiet() -> None:
    """Lightning's informational messages (tips, "GPU available") off."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def peak_memory(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one epoch of ``name`` in a fresh process; its peak memory in MiB."""
    cmd = [sys.executable, __file__, "--child", name, "--samples", str(args.samples)]
    cmd += ["--threads", str(args.threads), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def child(name: str, ds: TensorDataset, device: torch.device) -> None:
    if name == "lightning":
        import lightning  # noqa: F401  # type: ignore[import-not-found,unused-ignore]

        _quiet()
    CONTESTANTS[name](data(BATCH * 20), device)  # imports and first-call allocations first
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    CONTESTANTS[name](ds, device)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mib = 1024.0 * 1024.0
    result = {
        "rss_peak": peak * 1024 / mib,  # ru_maxrss is in KiB on Linux
        "rss_growth": (peak - base) * 1024 / mib,
        "python_peak": py_peak / mib,
    }
    if device.type == "cuda":
        result["cuda_peak"] = torch.cuda.max_memory_allocated() / mib
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", type=int, default=60000, help="training samples (one epoch)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from specnet._train.trainer import resolve_device

    device = resolve_device(args.device)
    ds = data(args.samples)
    if args.child:
        child(args.child, ds, device)
        return

    names = available()
    print(
        f"one epoch: {args.samples} samples of [1, 28, 28], batch {BATCH}, SGD lr {LR}; "
        f"device {device}, {args.threads} CPU thread(s), torch {torch.__version__}"
    )
    for name in names:  # warm-up: first-call costs (imports, allocator, kernels)
        CONTESTANTS[name](data(BATCH * 20), device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            CONTESTANTS[name](ds, device)
            times[name].append(time.perf_counter() - start)
    hand = statistics.median(times["hand"])
    memory = {} if args.no_memory else {n: peak_memory(n, args) for n in names}
    header = f"{'':<10} {'epoch (s)':>10} {'min':>8} {'max':>8} {'vs hand':>8}"
    if memory:
        header += f" {'peak RSS':>9} {'RSS +':>6} {'py peak':>8}"
        if device.type == "cuda":
            header += f" {'CUDA peak':>10}"
    print(f"\n{header}  (medians of {args.repeats}; memory in MiB, one fresh process each)")
    for name in names:
        med = statistics.median(times[name])
        line = (
            f"{name:<10} {med:>10.3f} {min(times[name]):>8.3f} {max(times[name]):>8.3f} "
            f"{med / hand:>8.3f}"
        )
        if memory:
            m = memory[name]
            line += f" {m['rss_peak']:>9.0f} {m['rss_growth']:>6.0f} {m['python_peak']:>8.2f}"
            if "cuda_peak" in m:
                line += f" {m['cuda_peak']:>10.0f}"
        print(line)


if __name__ == "__main__":
    main()
