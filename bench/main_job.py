"""The main job, from process start to exit: `specnet train` against a tutorial-style script.

    python bench/main_job.py [--rounds 5] [--conditions idle,busy] [--markdown]

Each round runs, as fresh processes with cwd the repository root:

- specnet:       ``python -m specnet train examples/digits_cnn.yaml --out TMP --overwrite``,
                 its data cache warm (as on every run after a spec's first);
- specnet first: the same with an empty data cache of its own (``SPECNET_CACHE``), as the
                 first run of a spec: a helper process imports scikit-learn and splits
                 Digits while the run imports torch;
- script:        ``python bench/_tutorial_digits.py``, the same job written as the PyTorch
                 tutorials write it (nn.Module, DataLoader, the plain loop, torch's default
                 threads);
- script 1 thread: the same script with ``OMP_NUM_THREADS=1``, as a user who knows to set it
                 runs it: the thread count specnet's ``threads: auto`` picks on a busy host;
- imports:       ``python -c`` importing torch and building an Adam, and nothing else: the
                 imports every contestant pays before its first step (the optimizer's
                 constructor imports torch's compiler stack). "Beyond the imports" is each
                 one's whole run less the same round's imports: its data (the script and a
                 spec's first run also import scikit-learn and split Digits), training,
                 evaluation and what it writes.

Wall time is time.perf_counter around subprocess.run (imports, data, training, evaluation
and writing the run folder all count); "training" is the part of it from the built optimizer
to the end of the last epoch (specnet's ``train_seconds`` in ``TMP/run.json``: the checks
before the first step, the thread measuring, the epochs, validation and checkpoints; the time
the script prints for its loop: the epochs and validation), where the thread count matters;
accuracy is each one's test accuracy (specnet's from ``TMP/run.json``). None gets thread
settings but "script 1 thread": OMP_NUM_THREADS is removed from their environment, and
CUDA_VISIBLE_DEVICES="" puts all on the CPU (the script has no device code).

Conditions: ``idle`` (nothing else running, as far as the benchmark knows: the load average at
start is printed) and ``busy`` (one ``while True: pass`` process per core, started before the
condition's part of a round and killed after it). Every round runs each condition in turn, so
busy and idle see the same spell of the host; within a condition the order of the contestants
alternates from round to round. One untimed run of each comes first (the file cache warm, and
specnet's data cache filled). Reported: medians of each one's times, and the ratios of the
script's (torch's default threads) over each other's (above 1: the other faster) as the median
of the rounds' ratios, for the whole run, the training and the time beyond the imports; busy /
idle of each one's own median time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "examples/digits_cnn.yaml"
SCRIPT = "bench/_tutorial_digits.py"
SCRIPT_1 = "script 1 thread"
IMPORTS = "imports"
NAMES = ("specnet", "specnet first", "script", SCRIPT_1, IMPORTS)
"""The contestants (see the module's docstring)."""
IMPORTS_CODE = "import torch; torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])"
"""What the imports contestant runs: torch's import and the optimizer's."""


@dataclass(frozen=True)
class Run:
    seconds: float
    """From process start to exit."""
    training: float
    """From the built optimizer to the end of the last epoch (0 for the imports)."""
    accuracy: float | None
    """The test accuracy (None for the imports)."""
    threads: int | None = None
    """The count specnet's ``threads: auto`` chose."""
    step_ms: dict[str, float] | None = None
    """specnet's measurement: each count's mean step (ms)."""


def accuracy_from_output(text: str) -> float:
    """The number after "accuracy" on the last line naming the test accuracy (a fraction)."""
    lines = [line for line in text.splitlines() if "test" in line and "accuracy" in line]
    found = re.search(r"accuracy\s+([0-9.]+)(%?)", lines[-1]) if lines else None
    if found is None:
        raise RuntimeError(f"no test accuracy in the output:\n{text[-2000:]}")
    return float(found[1]) / (100 if found[2] else 1)


def run_once(name: str, out: Path) -> Run:
    """One fresh process of ``name``, printed as it ends."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU for all (the script has no device code)
    if name == IMPORTS:
        cmd = [sys.executable, "-c", IMPORTS_CODE]
    elif name in ("script", SCRIPT_1):
        cmd = [sys.executable, SCRIPT]
        if name == SCRIPT_1:
            env["OMP_NUM_THREADS"] = "1"
    else:
        cmd = [sys.executable, "-m", "specnet", "train", SPEC, "--out", str(out), "--overwrite"]
    with tempfile.TemporaryDirectory() as empty:
        if name == "specnet first":
            env["SPECNET_CACHE"] = empty
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {done.returncode}:\n{output[-4000:]}")
    if name == IMPORTS:
        run = Run(seconds, 0.0, None)
    elif name in ("script", SCRIPT_1):
        found = re.search(r"training loop ([0-9.]+) s", output)
        if found is None:
            raise RuntimeError(f"no training loop time in the output:\n{output[-2000:]}")
        run = Run(seconds, float(found[1]), accuracy_from_output(output))
    else:
        record = json.loads((out / "run.json").read_text())
        run = Run(
            seconds,
            record["train_seconds"],
            record["test"]["accuracy"],
            record["threads"],
            record["thread_step_ms"],
        )
    threads = f", threads {run.threads}" if run.threads is not None else ""
    if run.step_ms:
        steps = ", ".join(f"{n}: {ms:.1f}" for n, ms in run.step_ms.items())
        threads += f" (mean step ms {steps})"
    training = "" if name == IMPORTS else f", training {run.training:.1f} s"
    print(f"  {out.name}: {name} {seconds:.1f} s{training}{threads}")
    return run


def busy_processes() -> list[subprocess.Popen[bytes]]:
    """One process spinning on every core."""
    cmd = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(cmd) for _ in range(os.cpu_count() or 1)]


def measure(rounds: int, tmp: Path, conditions: list[str]) -> dict[str, dict[str, list[Run]]]:
    """Every run of each condition and contestant, the conditions in turn in every round."""
    runs: dict[str, dict[str, list[Run]]] = {c: {n: [] for n in NAMES} for c in conditions}
    for r in range(rounds):
        for c in conditions:
            spinners = busy_processes() if c == "busy" else []
            try:
                time.sleep(1.0 if spinners else 0.0)  # the spinners running before the runs
                for name in NAMES if r % 2 == 0 else reversed(NAMES):
                    runs[c][name].append(run_once(name, tmp / f"{c}-{r}"))
            finally:
                for p in spinners:
                    p.kill()
                for p in spinners:
                    p.wait()
    return runs


def ratio(runs: dict[str, list[Run]], name: str, field: str, over: str = "script") -> float:
    """The median over the rounds of ``over``'s ``field`` over ``name``'s."""
    pairs = zip(runs[over], runs[name], strict=True)
    return statistics.median(float(getattr(s, field)) / float(getattr(o, field)) for s, o in pairs)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in runs)


def beyond_imports(runs: dict[str, list[Run]], name: str) -> list[float]:
    """``name``'s whole run less the same round's imports, round by round."""
    pairs = zip(runs[name], runs[IMPORTS], strict=True)
    return [run.seconds - imports.seconds for run, imports in pairs]


def beyond_ratio(runs: dict[str, list[Run]], name: str, over: str = "script") -> str:
    """The median of the rounds' ratios of ``over``'s time beyond the imports over ``name``'s
    (over the rounds where both are positive, counted when some are not)."""
    pairs = list(zip(beyond_imports(runs, over), beyond_imports(runs, name), strict=True))
    ratios = [s / o for s, o in pairs if s > 0 and o > 0]
    if not ratios:
        return "no round where both took longer than the imports"
    counted = "" if len(ratios) == len(pairs) else f" in {len(ratios)} of {len(pairs)} rounds"
    return f"{statistics.median(ratios):.2f}{counted}"


def beyond_text(runs: dict[str, list[Run]], name: str) -> str:
    """The median of ``name``'s time beyond the imports and, but for the script, the script's
    over it."""
    text = f"{name} {statistics.median(beyond_imports(runs, name)):.1f} s"
    return text if name == "script" else f"{text} ({beyond_ratio(runs, name)})"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each runs every condition)")
    ap.add_argument("--conditions", default="idle,busy", help="idle, busy or both")
    ap.add_argument("--markdown", action="store_true", help="a markdown table for the README")
    args = ap.parse_args()
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not conditions or not set(conditions) <= {"idle", "busy"}:
        ap.error(f"--conditions: idle, busy or idle,busy, got {args.conditions!r}")

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: os.cpu_count() {os.cpu_count()}, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start"
    )
    print(f"{SPEC} from process start to exit: specnet train against {SCRIPT}")
    print(f"{args.rounds} round(s) of {' and '.join(conditions)} after one warm-up run each\n")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name in NAMES:
            run_once(name, tmp / "warm-up")
        runs = measure(args.rounds, tmp, conditions)

    header = ["condition", "contestant", "whole run (s)", "script / it"]
    header += ["training (s)", "script / it", "test accuracy"]
    rows = []
    for c, by_name in runs.items():
        for name, found in by_name.items():
            mine = name in ("script", IMPORTS)
            accuracies = [r.accuracy for r in found if r.accuracy is not None]
            rows.append(
                [
                    c,
                    name,
                    f"{median(found, 'seconds'):.1f}",
                    "" if mine else f"{ratio(by_name, name, 'seconds'):.2f}",
                    "" if name == IMPORTS else f"{median(found, 'training'):.1f}",
                    "" if mine else f"{ratio(by_name, name, 'training'):.2f}",
                    f"{statistics.median(accuracies):.2%}" if accuracies else "",
                ]
            )
    print()
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        for row in [header, *rows]:
            print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    for c, by_name in runs.items():
        parts = [beyond_text(by_name, name) for name in NAMES if name != IMPORTS]
        print(f"\nbeyond the imports, {c} (script / it in brackets): " + ", ".join(parts))
    for c, by_name in runs.items():
        parts = []
        for name in ("specnet", "specnet first"):
            whole = ratio(by_name, name, "seconds", SCRIPT_1)
            beyond = beyond_ratio(by_name, name, SCRIPT_1)
            parts.append(f"{name} {whole:.2f} (beyond the imports {beyond})")
        print(f"\n{SCRIPT_1} / it, {c}: " + ", ".join(parts))
    if "idle" in runs and "busy" in runs:
        slower = {
            n: median(runs["busy"][n], "seconds") / median(runs["idle"][n], "seconds")
            for n in NAMES
        }
        print("\nbusy / idle: " + ", ".join(f"{n} {v:.2f}x" for n, v in slower.items()))


if __name__ == "__main__":
    main()
