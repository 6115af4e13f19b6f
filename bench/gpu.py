"""Training throughput on a GPU: specnet.Trainer on built models against hand-written loops.

    python bench/gpu.py                                  # fp32 and bf16, both models
    python bench/gpu.py --precision bf16 --compile       # torch.compile in both contestants
    python bench/gpu.py --data-on-device                 # the data set kept on the GPU
    python bench/gpu.py --device cpu --samples 2048 --epochs 2 --repeats 1   # a smoke run

Two workloads, each on synthetic data of its data set's shape:

- mlp:      the tutorials' FashionMNIST MLP ([1, 28, 28], 60,000 samples, batch 64);
- resnet18: ResNet-18 on CIFAR-shaped images ([3, 32, 32], 10,000 samples, batch 128).

Contestants, the same optimizer (SGD, lr 0.01, momentum 0.9) and loss (CrossEntropyLoss):

- hand:    the hand-written module (the tutorials' NeuralNetwork; torchvision's resnet18) in
           the tutorials' loop, written well: a DataLoader with pinned memory and
           non-blocking copies (or the tensors on the GPU, indexed by a random permutation),
           autocast (and a GradScaler for fp16), zero_grad(set_to_none=True), no .item() per
           step; torch.compile of the module when asked;
- specnet: the model built from examples/fashion_mnist_mlp.yaml or examples/resnet18.yaml
           (input set to [3, 32, 32]) trained by specnet.Trainer.from_spec with the same
           settings (train.precision, train.compile, train.data_on_device), its defaults
           otherwise (deterministic algorithms, cudnn.benchmark off; --no-deterministic lifts
           that).

Each run trains ``--epochs`` epochs; the first is the warm-up (compilation, cuDNN's choices,
the allocator) and is not counted. Samples per second are the median over the other epochs of
all ``--repeats`` runs, which alternate between the contestants; the ratio is specnet / hand
(above 1: specnet is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from seeds import NeuralNetwork, resnet18  # bench/ is on sys.path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
LR, MOMENTUM = 0.01, 0.9
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Workload:
    def __init__(
        self,
        name: str,
        spec: Path,
        overrides: list[str],
        hand: Callable[[], nn.Module],
        shape: tuple[int, ...],
        samples: int,
        batch: int,
    ) -> None:
        self.name, self.spec, self.overrides, self.hand = name, spec, overrides, hand
        self.shape, self.samples, self.batch = shape, samples, batch

    def data(self, samples: int | None) -> TensorDataset:
        n = samples or self.samples
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, *self.shape, generator=g)
        return TensorDataset(x, torch.randint(0, 10, (n,), generator=g))


WORKLOADS = {
    "mlp": Workload(
        "mlp", ROOT / "examples/fashion_mnist_mlp.yaml", [], NeuralNetwork, (1, 28, 28), 60000, 64
    ),
    "resnet18": Workload(
        "resnet18",
        ROOT / "examples/resnet18.yaml",
        ["input=[3, 32, 32]"],
        resnet18,
        (3, 32, 32),
        10000,
        128,
    ),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_hand(w: Workload, ds: TensorDataset, device: torch.device, args: Any) -> list[float]:
    """Seconds per epoch of the hand-written loop."""
    torch.manual_seed(0)
    model = w.hand().to(device)
    forward: Callable[..., torch.Tensor] = torch.compile(model) if args.compile else model
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None
    dtype = DTYPES.get(args.precision)
    if args.data_on_device:
        xs, ys = (t.to(device) for t in ds.tensors)
    else:
        loader = DataLoader(ds, batch_size=w.batch, shuffle=True, pin_memory=device.type == "cuda")
    model.train()
    times = []
    for _ in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        if args.data_on_device:
            order = torch.randperm(len(xs), device=device)
            batches: Any = (
                (xs[i], ys[i]) for i in (order[s : s + w.batch] for s in range(0, len(xs), w.batch))
            )
        else:
            batches = loader
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = loss_fn(forward(x), y)
            if scaler is not None:
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call,unused-ignore]
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def run_specnet(w: Workload, ds: TensorDataset, device: torch.device, args: Any) -> list[float]:
    """Seconds per epoch of specnet.Trainer on the model built from the spec."""
    import specnet
    from specnet._front.overrides import load_with_overrides

    spec = load_with_overrides(w.spec, w.overrides)
    torch.manual_seed(0)
    trainer = specnet.Trainer.from_spec(
        spec,
        model=specnet.build(spec),
        device=device,
        epochs=args.epochs,
        batch_size=w.batch,
        loss="CrossEntropyLoss",
        optimizer={"type": "SGD", "lr": LR, "momentum": MOMENTUM},
        schedule=None,
        metrics=(),
        precision=args.precision,
        compile=args.compile,
        data_on_device=args.data_on_device,
        deterministic=not args.no_deterministic,
        log_every=0,
    )
    trainer.fit(ds)
    return [float(row["seconds"]) for row in trainer.history]


CONTESTANTS = {"hand": run_hand, "specnet": run_specnet}


def measure(w: Workload, device: torch.device, args: Any) -> dict[str, float]:
    ds = w.data(args.samples)
    epochs: dict[str, list[float]] = {name: [] for name in CONTESTANTS}
    for r in range(args.repeats):
        names = list(CONTESTANTS)[:: 1 if r % 2 == 0 else -1]
        for name in names:
            times = CONTESTANTS[name](w, ds, device, args)
            epochs[name] += times[1:] if len(times) > 1 else times
    return {name: len(ds) / statistics.median(t) for name, t in epochs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    p.add_argument(
        "--precision", nargs="+", choices=["fp32", "bf16", "fp16"], default=["fp32", "bf16"]
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both)")
    p.add_argument("--data-on-device", action="store_true", help="keep the data on the device")
    p.add_argument("--no-deterministic", action="store_true", help="specnet: deterministic=False")
    p.add_argument("--samples", type=int, help="samples per epoch (default: the workload's)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run, the first not counted")
    p.add_argument("--repeats", type=int, default=3, help="runs per contestant, alternating")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = "on the device" if args.data_on_device else "pinned, non-blocking copies"
    print(
        f"compile={args.compile}  data {data}  epochs {args.epochs} (first not counted)  "
        f"repeats {args.repeats}\n"
    )
    print(
        f"{'workload':10} {'precision':9} {'hand samples/s':>15} {'specnet samples/s':>18} {'ratio':>6}"
    )
    precisions = list(args.precision)
    for name in args.only:
        for precision in precisions:
            args.precision = precision
            rates = measure(WORKLOADS[name], device, args)
            ratio = rates["specnet"] / rates["hand"]
            print(
                f"{name:10} {precision:9} {rates['hand']:15,.0f} {rates['specnet']:18,.0f} {ratio:6.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
