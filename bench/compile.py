"""Built models against the same architectures written by hand, side by side in one run.

    python bench/compile.py [--rounds 9] [--threads 1] [--cpu-time] [--only lenet resnet18]
    python bench/compile.py --compile --only lenet fashion_mlp residual_graph

Each case is a spec and a hand-written module with the same layers (the same torch
modules under the same attribute names, so one set of weights loads into both):

- lenet:          examples/lenet.yaml; a class with one module per layer as the spec has
                  them (nn.Conv2d, nn.ReLU, nn.MaxPool2d; nn.Flatten for the spec's Reshape)
                  and a forward that calls each in turn;
- fashion_mlp:    examples/fashion_mnist_mlp.yaml; the tutorials' NeuralNetwork;
- residual_graph: a graph of Linear and ReLU layers with two Add skip connections; its
                  forward by hand;
- resnet18:       examples/resnet18.yaml; torchvision's resnet18;
- lenet_tutorial: examples/lenet.yaml against the tutorials' LeNet, whose forward calls
                  F.relu and F.max_pool2d where the spec has modules (for information: the
                  architectures differ by seven module calls).

Measured for each: build time (specnet.build of the file, and of an already loaded Spec,
against constructing the hand-written module) and forward time at batch 1 and 64, inference
(no_grad) and a training step (forward and backward), with the same weights. Each figure is
the median over interleaved rounds of torch.utils.benchmark measurements, each round
measuring both contestants, first one then the other in turn; the ratio specnet /
hand-written is the median of the rounds' ratios. A table of the ratios closes the run.

--compile adds inference at batch 1 of torch.compile(model) (the default inductor backend;
what `compile: true` in a spec's train section does) against the same model run eagerly.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from seeds import LeNet, NeuralNetwork, resnet18  # bench/ is on sys.path
from torch import nn
from torch.utils.benchmark import Timer

import specnet

ROOT = Path(__file__).resolve().parent.parent


class LeNetModules(nn.Module):
    """examples/lenet.yaml by hand: one module per layer, called in turn."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d((2, 2))
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(576, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        out: torch.Tensor = self.fc3(x)
        return out


RESIDUAL = """\
input: [64]
model:
  type: Graph
  nodes:
    fc1: {type: Linear, out_features: 64}
    act1: ReLU
    fc2: {type: Linear, out_features: 64}
    res1: {type: Add, input: [input, fc2]}
    fc3: {type: Linear, out_features: 64}
    act2: ReLU
    fc4: {type: Linear, out_features: 64}
    res2: {type: Add, input: [res1, fc4]}
    head: {type: Linear, out_features: 10}
"""


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 64)
        self.act2 = nn.ReLU()
        self.fc4 = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r1 = x + self.fc2(self.act1(self.fc1(x)))
        r2 = r1 + self.fc4(self.act2(self.fc3(r1)))
        out: torch.Tensor = self.head(r2)
        return out


CASES: list[tuple[str, Any, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("lenet", ROOT / "examples" / "lenet.yaml", LeNetModules, (1, 32, 32)),
    ("fashion_mlp", ROOT / "examples" / "fashion_mnist_mlp.yaml", NeuralNetwork, (1, 28, 28)),
    ("residual_graph", RESIDUAL, Residual, (64,)),
    ("resnet18", ROOT / "examples" / "resnet18.yaml", resnet18, (3, 224, 224)),
    ("lenet_tutorial", ROOT / "examples" / "lenet.yaml", LeNet, (1, 32, 32)),
]
COLUMNS = [
    "build (file)",
    "build (Spec)",
    "forward, batch 1",
    "forward, batch 64",
    "train step, batch 1",
    "train step, batch 64",
]


@dataclass(frozen=True)
class Bench:
    """How each comparison is measured."""

    rounds: int
    min_run_time: float
    clock: Callable[[], float] = time.perf_counter

    def median_time(self, fn: Callable[[], Any]) -> float:
        timer = Timer(
            stmt="fn()", globals={"fn": fn}, timer=self.clock, num_threads=torch.get_num_threads()
        )
        return timer.blocked_autorange(min_run_time=self.min_run_time).median

    def compare(
        self,
        label: str,
        mine: Callable[[], Any],
        theirs: Callable[[], Any],
        names: tuple[str, str] = ("specnet", "hand"),
    ) -> float:
        """Print both medians and the ratio mine / theirs; return the ratio."""
        a, b = [], []
        for i in range(self.rounds):  # interleaved, so drifts in machine load hit both
            if i % 2:  # and in turn first, so neither always follows the other
                b.append(self.median_time(theirs))
                a.append(self.median_time(mine))
            else:
                a.append(self.median_time(mine))
                b.append(self.median_time(theirs))
        ma, mb = statistics.median(a), statistics.median(b)
        # The ratio of each round's neighbouring measurements, then their median:
        # a slow spell of the machine lands on one round's pair, not on one contestant.
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(
            f"  {label:<26} {names[0]} {ma * 1e3:9.3f} ms   {names[1]} {mb * 1e3:9.3f} ms"
            f"   ratio {ratio:5.3f}"
        )
        return ratio


def infer(m: Callable[[torch.Tensor], Any], x: torch.Tensor) -> None:
    with torch.no_grad():
        m(x)


def step(m: nn.Module, x: torch.Tensor) -> None:
    m.zero_grad(set_to_none=True)
    m(x).sum().backward()


def measure(
    bench: Bench, source: Any, hand_cls: Callable[[], nn.Module], shape: tuple[int, ...]
) -> dict[str, float]:
    spec = specnet.load(source)
    out = {
        "build (file)": bench.compare("build (file)", partial(specnet.build, source), hand_cls),
        "build (Spec)": bench.compare("build (Spec)", partial(specnet.build, spec), hand_cls),
    }
    built, hand = specnet.build(spec), hand_cls()
    built.load_state_dict(hand.state_dict(), strict=True)
    for mode, run in (("forward", infer), ("train step", step)):
        built.train(mode != "forward")
        hand.train(mode != "forward")
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            label = f"{mode}, batch {batch}"
            out[label] = bench.compare(label, partial(run, built, x), partial(run, hand, x))
    return out


def measure_compiled(bench: Bench, source: Any, shape: tuple[int, ...]) -> float:
    """Batch-1 inference: torch.compile(model) against the same model run eagerly."""
    model = specnet.build(source).eval()
    compiled = torch.compile(model)
    x = torch.randn(1, *shape)
    infer(compiled, x)  # compiles
    fast, eager = partial(infer, compiled, x), partial(infer, model, x)
    return bench.compare("compiled, batch 1", fast, eager, ("compiled", "eager"))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-run-time", type=float, default=0.2)
    ap.add_argument("--only", nargs="*", help="case names")
    ap.add_argument("--compile", action="store_true", help="also torch.compile at batch 1")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the process's CPU time, not wall time (on a shared machine, with one thread)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(
        f"torch {torch.__version__}, {args.threads} thread(s),"
        f" {'CPU' if args.cpu_time else 'wall'} time,"
        f" medians of {args.rounds} interleaved rounds"
    )
    table: dict[str, dict[str, float]] = {}
    for name, source, hand_cls, shape in CASES:
        if args.only and name not in args.only:
            continue
        print(f"{name}:")
        rounds = max(3, args.rounds // 2) if name == "resnet18" else args.rounds
        bench = Bench(rounds, args.min_run_time, clock)
        table[name] = measure(bench, source, hand_cls, shape)
        if args.compile:
            table[name]["compiled / eager, batch 1"] = measure_compiled(bench, source, shape)
    columns = [
        c for c in [*COLUMNS, "compiled / eager, batch 1"] if any(c in r for r in table.values())
    ]
    print("\nratio specnet / hand-written:")
    print(f"  {'':<16}" + "".join(f"{c:>{max(len(c), 6) + 2}}" for c in columns))
    for name, row in table.items():
        cells = "".join(f"{row[c]:>{max(len(c), 6) + 2}.3f}" for c in columns)
        print(f"  {name:<16}{cells}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
