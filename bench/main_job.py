"""The main job, from process start to exit: `specnet train` against a tutorial-style script.

    python bench/main_job.py [--rounds 5] [--conditions idle,busy] [--markdown]

Each round runs, as fresh processes with cwd the repository root, in turn:

- specnet: ``python -m specnet train examples/digits_cnn.yaml --out TMP --overwrite``;
- script:  ``python bench/_tutorial_digits.py``, the same job written as the PyTorch
           tutorials write it (nn.Module, DataLoader, the plain loop, torch's default threads).

Wall time is time.perf_counter around subprocess.run (imports, data, training, evaluation
and writing the run folder all count); "epochs" is the part of it spent in the epochs
(training and validation: the sum of specnet's metrics.csv seconds, the time the script
prints), where the thread count matters; accuracy is each one's test accuracy (specnet's from
``TMP/run.json``, else from its last "test ... accuracy" line). Neither gets thread settings:
OMP_NUM_THREADS is removed from their environment, and CUDA_VISIBLE_DEVICES="" puts both on
the CPU (the script has no device code). Conditions: ``idle`` (nothing else running, as far
as the benchmark knows: the load average at start is printed) and ``busy`` (one
``while True: pass`` process per core, started before the condition's rounds and killed
after them). One untimed run of each comes first (the file cache warm for both); rounds are
interleaved, medians reported, with the ratio script / specnet (above 1: specnet faster) and
busy / idle of each one's own time.
"""

from __future__ import annotations

import argparse
import csv
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "examples/digits_cnn.yaml"
SCRIPT = "bench/_tutorial_digits.py"
NAMES = ("specnet", "script")


def accuracy_from_output(text: str) -> float:
    """The number after "accuracy" on the last line naming the test accuracy (a fraction)."""
    lines = [line for line in text.splitlines() if "test" in line and "accuracy" in line]
    found = re.search(r"accuracy\s+([0-9.]+)(%?)", lines[-1]) if lines else None
    if found is None:
        raise RuntimeError(f"no test accuracy in the output:\n{text[-2000:]}")
    return float(found[1]) / (100 if found[2] else 1)


def loop_seconds(name: str, output: str, out: Path) -> float:
    """The seconds the epochs took (training and validation): the script prints them, specnet's
    metrics.csv has each epoch's."""
    if name == "specnet":
        with open(out / "metrics.csv", encoding="utf-8", newline="") as f:
            return sum(float(row["seconds"]) for row in csv.DictReader(f))
    found = re.search(r"training loop ([0-9.]+) s", output)
    if found is None:
        raise RuntimeError(f"no training loop time in the output:\n{output[-2000:]}")
    return float(found[1])


def run_once(name: str, out: Path) -> tuple[float, float, float]:
    """One fresh process of ``name``: its wall time (s), test accuracy (a fraction) and the
    seconds of its epochs. Each run is printed as it ends (specnet's with the thread count
    it chose)."""
    if name == "specnet":
        cmd = [sys.executable, "-m", "specnet", "train", SPEC, "--out", str(out), "--overwrite"]
    else:
        cmd = [sys.executable, SCRIPT]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU for both (the script has no device code)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {done.returncode}:\n{output[-4000:]}")
    loop = loop_seconds(name, output, out)
    record = out / "run.json"
    if name == "specnet" and record.is_file():
        run = json.loads(record.read_text())
        print(
            f"  {out.name}: specnet {seconds:.1f} s, epochs {loop:.1f} s, threads {run['threads']}"
        )
        return seconds, float(run["test"]["accuracy"]), loop
    print(f"  {out.name}: {name} {seconds:.1f} s, epochs {loop:.1f} s")
    return seconds, accuracy_from_output(output), loop


def busy_processes() -> list[subprocess.Popen[bytes]]:
    """One process spinning on every core."""
    cmd = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(cmd) for _ in range(os.cpu_count() or 1)]


def measure(rounds: int, tmp: Path, busy: bool) -> dict[str, tuple[float, float, float]]:
    """Median wall time, accuracy and epochs' time of each contestant over interleaved rounds."""
    spinners = busy_processes() if busy else []
    try:
        time.sleep(1.0 if busy else 0.0)  # the spinners running before the first round
        results: dict[str, list[tuple[float, float, float]]] = {n: [] for n in NAMES}
        for r in range(rounds):
            for name in NAMES:
                out = tmp / f"{'busy' if busy else 'idle'}-{r}"
                results[name].append(run_once(name, out))
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()
    return {
        n: tuple(statistics.median(r[i] for r in v) for i in range(3))  # type: ignore[misc]
        for n, v in results.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds per condition")
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
    print(f"{args.rounds} interleaved round(s) per condition after one warm-up run; medians\n")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name in NAMES:
            run_once(name, tmp / "warm-up")
        results = {c: measure(args.rounds, tmp, c == "busy") for c in conditions}

    rows = []
    for c, res in results.items():
        (spec_s, spec_acc, spec_loop), (script_s, script_acc, script_loop) = (
            res["specnet"],
            res["script"],
        )
        times = [f"{spec_s:.1f}", f"{script_s:.1f}", f"{script_s / spec_s:.2f}"]
        loops = [f"{spec_loop:.1f}", f"{script_loop:.1f}", f"{script_loop / spec_loop:.2f}"]
        rows.append([c, *times, *loops, f"{spec_acc:.4f}", f"{script_acc:.4f}"])
    header = ["condition", "specnet (s)", "script (s)", "script/specnet"]
    header += ["specnet epochs (s)", "script epochs (s)", "script/specnet"]
    header += ["specnet acc", "script acc"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        for row in [header, *rows]:
            print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    if "idle" in results and "busy" in results:
        spec, script = (results["busy"][n][0] / results["idle"][n][0] for n in NAMES)
        print(f"\nbusy / idle: specnet {spec:.2f}x its idle time (script {script:.2f}x)")


if __name__ == "__main__":
    main()
