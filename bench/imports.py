"""The import campaign: every torchvision classifier, a sample of timm, and specnet's own specs.

    python bench/imports.py [--only torchvision|timm|own ...] [--models NAME ...] [--markdown]

Each model is built with random weights (nothing is downloaded), imported with specnet's
``from_module`` machinery, and checked as tests/test_import.py checks its subset (the table and
the check are tests/_imports.py): the spec builds, its state_dict has the model's keys in order
and their shapes, the model's weights load with ``strict=True``, and the eval outputs match in
float64 on another batch size. For each model it prints the outcome and, for those that do not
round-trip, the reasons; then the counts per source. For specnet's own specs it also prints the
imported spec's length against the file's (a family file with variants describes more than the
one variant imported). ``--markdown`` prints the README's tables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _imports  # tests/ is put on sys.path above


def sources() -> dict[str, list[tuple[str, Callable[[], _imports.Outcome]]]]:
    import torchvision

    tv = torchvision.models.list_models(module=torchvision.models)
    return {
        "torchvision": [(n, lambda n=n: _imports.torchvision_case(n)) for n in tv],
        "timm": [(n, lambda n=n: _imports.timm_case(n)) for n in _imports.TIMM_SAMPLE],
        "own": [
            (f"{p.relative_to(_imports.EXAMPLES)}", lambda p=p, v=v: _imports.own_case(p, v))
            for p, v in _imports.own_specs()
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["torchvision", "timm", "own"])
    parser.add_argument("--models", nargs="+", metavar="NAME", help="only these models")
    parser.add_argument("--markdown", action="store_true", help="print the README's tables")
    args = parser.parse_args(argv)
    results: dict[str, list[_imports.Outcome]] = {}
    for source, cases in sources().items():
        if args.only and source not in args.only:
            continue
        for name, run in cases:
            if args.models and name not in args.models:
                continue
            outcome = run()
            results.setdefault(source, []).append(outcome)
            if not args.markdown:
                line = f"{source:12s} {name:36s} {outcome.status:8s}"
                if source == "own" and outcome.lines:
                    original = len(
                        (_imports.EXAMPLES / name.split(" ")[0]).read_text().splitlines()
                    )
                    line += f" {original:4d} -> {outcome.lines:4d} lines"
                if not outcome.exact:
                    line += f"  {outcome.detail[:400]}"
                print(line, flush=True)
    for source, outcomes in results.items():
        exact = sum(o.exact for o in outcomes)
        if args.markdown:
            print(f"\n**{source}**: {exact} of {len(outcomes)} round-trip exactly.\n")
            print("| model | outcome | reason |\n| --- | --- | --- |")
            for o in outcomes:
                if not o.exact:
                    print(f"| {o.name} | {o.status} | {o.detail[:300].replace('|', '/')} |")
        else:
            print(f"{source}: {exact} of {len(outcomes)} round-trip exactly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
