"""Built models against hand-written PyTorch, side by side in one run.

    python bench/compile.py [--rounds 7] [--threads 1]

For each model: build time (specnet.build from the file, and from an already
loaded Spec) against constructing the hand-written module, and forward time at
batch 1 and 64, inference (no_grad) and a training step (forward, backward),
with the same weights. Timings are medians of interleaved rounds of
torch.utils.benchmark measurements; the ratio (specnet / hand-written) is the
median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from seeds import LeNet, NeuralNetwork, resnet18  # bench/ is on sys.path
from torch import nn
from torch.utils.benchmark import Timer

import specnet

ROOT = Path(__file__).resolve().parent.parent


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
    ("lenet", ROOT / "examples" / "lenet.yaml", LeNet, (1, 32, 32)),
    ("fashion_mlp", ROOT / "examples" / "fashion_mnist_mlp.yaml", NeuralNetwork, (1, 28, 28)),
    ("residual_graph", RESIDUAL, Residual, (64,)),
    ("resnet18", ROOT / "examples" / "resnet18.yaml", resnet18, (3, 224, 224)),
]


def median_time(fn: Callable[[], Any], min_run_time: float) -> float:
    return (
        Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median
    )


def compare(
    label: str, mine: Callable[[], Any], theirs: Callable[[], Any], rounds: int, min_run_time: float
) -> None:
    a, b = [], []
    for i in range(rounds):  # interleaved, so drifts in machine load hit both
        if i % 2:  # and in turn first, so neither always follows the other
            b.append(median_time(theirs, min_run_time))
            a.append(median_time(mine, min_run_time))
        else:
            a.append(median_time(mine, min_run_time))
            b.append(median_time(theirs, min_run_time))
    ma, mb = statistics.median(a), statistics.median(b)
    # The ratio of each round's neighbouring measurements, then their median:
    # a slow spell of the machine lands on one round's pair, not on one contestant.
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    print(
        f"  {label:<28} specnet {ma * 1e3:9.3f} ms   hand {mb * 1e3:9.3f} ms   ratio {ratio:5.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-run-time", type=float, default=0.2)
    ap.add_argument("--only", nargs="*", help="case names")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), medians of {args.rounds} interleaved rounds"
    )
    for name, source, hand_cls, shape in CASES:
        if args.only and name not in args.only:
            continue
        print(f"{name}:")
        spec = specnet.load(source)
        rounds = max(3, args.rounds // 2) if name == "resnet18" else args.rounds
        compare(
            "build (from file/text)",
            partial(specnet.build, source),
            hand_cls,
            rounds,
            args.min_run_time,
        )
        compare(
            "build (from loaded Spec)",
            partial(specnet.build, spec),
            hand_cls,
            rounds,
            args.min_run_time,
        )
        built, hand = specnet.build(spec), hand_cls()
        built.load_state_dict(hand.state_dict())
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            built.eval()
            hand.eval()

            def infer(m: nn.Module, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    m(x)

            compare(
                f"forward, no_grad, batch {batch}",
                partial(infer, built),
                partial(infer, hand),
                rounds,
                args.min_run_time,
            )
            built.train()
            hand.train()

            def step(m: nn.Module, x: torch.Tensor = x) -> None:
                m.zero_grad(set_to_none=True)
                m(x).sum().backward()

            compare(
                f"train step, batch {batch}",
                partial(step, built),
                partial(step, hand),
                rounds,
                args.min_run_time,
            )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
