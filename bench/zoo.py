"""The model zoo's table: every entry of tests/_zoo.py against the model it reproduces.

    python bench/zoo.py [--only resnet50 vgg16_bn] [--rounds 5] [--markdown]

For each entry: its parameter count; whether it matches its source (the checks of
tests/test_zoo.py: state_dict keys in order, shapes and parameter count, and, where the
entry says ``forward``, the source's weights loaded with ``strict=True`` and the same eval
outputs in float64; ``meta``: keys, shapes and count on the meta device only); the spec's
lines against the Python it replaces (lines that hold code: no blank lines, comments or
docstrings; the source's model classes, tables and builders in its module file, listed in
tests/_zoo.py); the multiply-accumulates per sample from ``specnet.summary`` against
torchvision's figure (its weights' ``meta["_ops"]``, for the weights evaluated at the spec's
input size where there are some, else the default weights, with their size); and the time to
load and build the spec on the meta device (the median of ``--rounds``; a shared machine makes
it noisy). ``--markdown`` prints the README's table (without the path and the build time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _zoo  # tests/ is put on sys.path above

import specnet


def matches(case: _zoo.Case) -> str:
    """``yes``, or ``no`` with the first line of what differs."""
    try:
        if case.how == "meta":
            _zoo.assert_same_layout(_zoo.build(case, "meta"), _zoo.source(case, "meta"))
        else:
            ours, theirs = _zoo.paired(case)
            _zoo.assert_same_layout(ours, theirs)
            _zoo.assert_same_outputs(case, ours, theirs)
    except (AssertionError, RuntimeError, specnet.SpecError) as exc:
        return "no: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0][:60]
    return "yes" if case.how == "forward" else "yes (meta)"


def build_ms(case: _zoo.Case, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _zoo.build(case, "meta")
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def row(case: _zoo.Case, rounds: int) -> list[str]:
    spec = _zoo.load(case)
    summary = specnet.summary(spec)
    lines = f"{_zoo.spec_lines(case.path)}"
    if case.code is not None:
        lines += f" / {_zoo.python_lines(*case.code)}"
    reference = ""
    if case.ops is not None:
        size = next(iter(spec.inputs.values())).shape[-1]  # [3, 224, 224]: 224
        gmacs, at = _zoo.torchvision_gmacs(case.ops, size)
        reference = f"{gmacs:.3f}" + ("" if at == size else f" (at {at}x{at}; spec {size}x{size})")
    return [
        case.id,
        case.spec,
        f"{summary.total_params:,}",
        matches(case),
        lines,
        f"{summary.total_macs / 1e9:.3f}",
        reference,
        f"{build_ms(case, rounds):.0f}",
    ]


HEADER = [
    "model",
    "spec",
    "parameters",
    "matches source",
    "spec / source lines",
    "GMACs",
    "torchvision GMACs",
    "meta build ms",
]


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:  # the README's table: without the spec's path and the (noisy) build time
        keep = [i for i, h in enumerate(HEADER) if h not in ("spec", "meta build ms")]
        lines = [HEADER, ["---"] * len(HEADER), *rows]
        return "\n".join("| " + " | ".join(r[i] for i in keep) + " |" for r in lines)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [HEADER, *rows]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="entries by name (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="meta builds timed per entry")
    parser.add_argument("--markdown", action="store_true", help="the README's Markdown table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in _zoo.CASES if not args.only or c.id in args.only]
    unknown = set(args.only or []) - {c.id for c in cases}
    if unknown:
        parser.error(f"no zoo entries {sorted(unknown)}; there are {[c.id for c in _zoo.CASES]}")
    rows = []
    for case in cases:
        try:
            rows.append(row(case, args.rounds))
        except specnet.SpecError as exc:
            rows.append([case.id, case.spec, "", f"no: {exc.errors[0]}"[:80], "", "", "", ""])
    print(render(rows, args.markdown))


if __name__ == "__main__":
    main()
