"""A structure-aware fuzz campaign over specnet's public entry points.

Each case starts from one of ``examples/*.yaml`` and mutates it (keys deleted, renamed,
duplicated; values of the wrong type; huge and negative numbers; random layer types;
``repeat``; block parameters; aliases; unicode; corrupted YAML text), then runs
``load``, ``validate``, ``build(device="meta")`` and ``summary``. A case fails when any of
them raises anything but :class:`specnet.SpecError`, when an error has no line and column,
or when it takes more than ``--slow`` seconds of CPU time.

    python bench/fuzz.py --seed 0 --cases 100000 --out fuzz-failures --jobs 2

Every failing case is saved (``case-<n>.yaml`` and ``case-<n>.txt`` with the traceback)
into ``--out``; the last line printed is ``cases N failures F time T s seed S``. Cases that
``validate`` passed and the build refused (with a located SpecError) are no failures, but
are counted and saved under ``disagreements/``. Case
``n`` of seed ``S`` is always the same text, so ``--only n`` replays one.

``tests/test_fuzz.py`` drives the same mutations from hypothesis, a few thousand cases.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))

_NUMBERS: list[Any] = [
    0,
    -1,
    -7,
    1,
    2,
    3,
    10**6,
    2**31,
    2**63,
    10**30,
    -(10**30),
    0.5,
    -0.5,
    1.0e308,
    -1.0e308,
    1e-320,
    float("inf"),
    float("-inf"),
    float("nan"),
]
_STRINGS: list[Any] = [
    "",
    "x",
    "ReLU",
    "$x",
    "$n",
    "${x}",
    "yes",
    "é" * 3,
    "名前",
    "\u202e",
    "a\n",
    "../../etc/passwd",
    "__import__('os')",
    "_private",
    "a" * 5000,
    "Conv2d" * 300,
]
_OTHERS: list[Any] = [None, True, False, [], {}, [1, 2], [2, 2], [[1]], {"a": 1}, {"type": "ReLU"}]
_KEYS = [
    "type",
    "layers",
    "repeat",
    "input",
    "output",
    "nodes",
    "inputs",
    "between",
    "forward",
    "blocks",
    "params",
    "body",
    "name",
    "train",
    "model",
    "version",
    "out_features",
    "kernel_size",
    "out_channels",
    "stride",
    "padding",
    "dim",
    "shape",
    "scale_factor",
    "output_size",
    "num_heads",
    "lr",
    "betas",
    "momentum",
    "weight_decay",
    "eps",
    "step_size",
    "gamma",
    "_n",
    "$x",
    "ü",
]


def _names(kind: str) -> list[str]:
    from specnet._front import registry

    if kind == "layers":
        return sorted(registry.layers())
    if kind == "optimizers":
        return sorted(registry.optimizers())
    if kind == "schedulers":
        return sorted(registry.schedulers())
    return sorted(registry.losses())


def _scalar(rng: random.Random) -> Any:
    pool = rng.choice((_NUMBERS, _NUMBERS, _STRINGS, _OTHERS))
    value = copy.deepcopy(rng.choice(pool))  # the pools are shared: never mutate them
    if rng.random() < 0.2:
        value = rng.choice([rng.randint(-5, 300), 10 ** rng.randint(3, 40), rng.uniform(-3, 3)])
    return value


def _paths(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in the document."""
    out: list[tuple[Any, Any]] = []
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                out.append((v, k))
                stack.append(x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                out.append((v, i))
                stack.append(x)
    return out


def _random_layer(rng: random.Random) -> Any:
    name = rng.choice(_names("layers"))
    if rng.random() < 0.3:
        return name
    layer: dict[str, Any] = {"type": name}
    for _ in range(rng.randint(0, 3)):
        layer[rng.choice(_KEYS)] = _scalar(rng)
    if rng.random() < 0.3:
        layer["repeat"] = rng.choice([1, 2, 3, 0, -1, 10**5, 10**30])
    return layer


def _train(rng: random.Random) -> dict[str, Any]:
    opt: dict[str, Any] = {"type": rng.choice(_names("optimizers")), "lr": rng.choice([0.1, -1, 0])}
    for key in rng.sample(["betas", "momentum", "weight_decay", "eps", "lr", "dampening"], 2):
        opt[key] = rng.choice([*_NUMBERS[:8], [2, 2], [0.9, 0.999], [-1, 0.5], "x"])
    sched: dict[str, Any] = {"type": rng.choice(_names("schedulers"))}
    for key in rng.sample(
        ["step_size", "gamma", "T_max", "milestones", "factor", "total_iters"], 2
    ):
        sched[key] = rng.choice([*_NUMBERS[:8], [1, 2], [], 0.1])
    train: dict[str, Any] = {
        "data": {"type": "Synthetic"},
        "batch_size": rng.choice([1, 8, 0, -3]),
        "epochs": rng.choice([1, 0, 10**9]),
        "loss": rng.choice(_names("losses")),
        "optimizer": opt,
    }
    if rng.random() < 0.7:
        train["schedule"] = sched
    return train


def _blocks(rng: random.Random, data: dict[str, Any]) -> None:
    pname = rng.choice(["n", "_n", "x", "type", "repeat", "$n", "a b"])
    ptype = rng.choice(["int", "float", "list", "any", 3, [1], "str"])
    body = rng.choice(
        [
            {"type": "Linear", "out_features": f"${pname}"},
            {"type": "Sequential", "layers": [f"${pname}", "ReLU"]},
            {"type": "Reshape", "shape": f"${pname}"},
            {"type": "Sequential", "layers": [{"type": "B", "n": f"${pname}"}]},
        ]
    )
    data["blocks"] = {"B": {"params": {pname: ptype}, "body": body}}
    use: dict[str, Any] = {"type": "B", pname: _scalar(rng)}
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("layers"), list):
        model["layers"].insert(rng.randint(0, len(model["layers"])), use)
    else:
        data["model"] = {"type": "Sequential", "layers": ["Flatten", use]}


def _mutate_data(rng: random.Random, data: Any) -> Any:
    """One structural mutation; returns the (possibly new) document."""
    spots = _paths(data)
    op = rng.randrange(12)
    if not spots or not isinstance(data, dict):
        return rng.choice([data, {"input": [3], "model": _random_layer(rng)}])
    parent, key = rng.choice(spots)
    if op == 0:  # delete a key or item
        del parent[key]
    elif op == 1 and isinstance(parent, dict):  # rename a key
        value = parent.pop(key)
        new = rng.choice([*_KEYS, str(key)[:-1], str(key) + "s", str(key).upper(), "a" * 3000])
        parent[new] = value
    elif op in (2, 3):  # a value of the wrong type, or a strange number
        parent[key] = _scalar(rng) if op == 2 else rng.choice(_NUMBERS)
    elif op == 4:  # a random layer type
        targets = [(p, k) for p, k in spots if k == "type"]
        if targets:
            p, k = rng.choice(targets)
            p[k] = rng.choice(_names("layers"))
    elif op == 5:  # repeat
        nodes = [p[k] for p, k in spots if isinstance(p[k], dict) and "type" in p[k]]
        if nodes:
            rng.choice(nodes)["repeat"] = rng.choice([2, 3, 0, 10**5, 10**30, "$n", True])
    elif op == 6:  # insert a random layer into a list of layers
        lists = [p[k] for p, k in spots if k == "layers" and isinstance(p[k], list)]
        if lists:
            target = rng.choice(lists)
            target.insert(rng.randint(0, len(target)), _random_layer(rng))
    elif op == 7:
        data["train"] = _train(rng)
    elif op == 8:
        _blocks(rng, data)
    elif op == 9:  # top-level odds
        data[rng.choice(["name", "input", "version"])] = copy.deepcopy(
            rng.choice([*_STRINGS, *_OTHERS, [3, 10**9, 10**9], [0], [1, 2**40]])
        )
    elif op == 10:  # graph outputs and inputs
        data["model"] = {
            "type": "Graph",
            "nodes": {
                "a": _random_layer(rng),
                "b": {"type": "ReLU", "input": rng.choice(["a", 3])},
            },
            "output": rng.choice(["b", 3, ["a", "b"], [3], None, {"x": 1}, "zz"]),
        }
    else:  # a nested copy of a subtree (a big value, or a deep one)
        scalar = not isinstance(parent[key], (dict, list))
        parent[key] = [parent[key]] * rng.choice([2, 50, 3000] if scalar else [2, 50])
    return data


def _dump(rng: random.Random, data: Any) -> str:
    try:
        if rng.random() < 0.3:
            return json.dumps(data, allow_nan=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=rng.random() < 0.5)
    except (ValueError, TypeError, OverflowError, yaml.YAMLError):
        return repr(data)


_HOSTILE = [
    "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 600)),
    "x: &x [1, 2]\n" + "".join(f"y{i}: &y{i} [*x, *x]\n" for i in range(30)),
    "# only a comment\n",
    "",
    "---\n...\n",
    "input: [1]\nmodel: &m {type: Sequential, layers: [*m]}\n",
    "input: [3]\nmodel: {type: Linear, out_features: 4}\ninput: [4]\n",
]


def _corrupt_text(rng: random.Random, text: str) -> str:
    op = rng.randrange(7)
    if op == 6:
        return rng.choice(_HOSTILE)
    if not text:
        return text
    i = rng.randrange(len(text))
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1:
        return text[:i] + rng.choice(":{}[]&*!|>-#'\"\t\n\\%@`,?\x00\ufeff\u2028é") + text[i:]
    if op == 2:
        lines = text.splitlines(keepends=True)
        j = rng.randrange(len(lines))
        lines.insert(j, lines[j])  # duplicates a line: duplicate keys, mostly
        return "".join(lines)
    if op == 3:
        return text[:i]
    if op == 4:
        lines = text.splitlines(keepends=True)
        j = rng.randrange(len(lines))
        return "".join(lines[:j]) + " " * rng.randint(1, 4) + "".join(lines[j:])
    return text.replace(": ", ": &a ", 1).replace("- ", "- *a ", 1)


_SOURCES: dict[Path, Any] = {}


def make_case(rng: random.Random) -> str:
    """One mutated spec text."""
    path = rng.choice(EXAMPLES)
    if path not in _SOURCES:
        _SOURCES[path] = yaml.safe_load(path.read_text())
    data = json.loads(json.dumps(_SOURCES[path]))
    for _ in range(rng.randint(1, 4)):
        data = _mutate_data(rng, data)
    text = _dump(rng, data)
    if rng.random() < 0.25:
        text = _corrupt_text(rng, text)
    return text


def case_text(seed: int, n: int) -> str:
    return make_case(random.Random(f"{seed}:{n}"))


class Slow(Exception):
    """A case took longer than the campaign's limit."""


@dataclass
class Outcome:
    ok: bool
    stage: str = ""
    detail: str = ""
    """The traceback of a failure; for a passing case, a disagreement worth a look."""


def check_errors(exc: Any) -> str | None:
    """What is wrong with a SpecError's items (each needs a line and a column), if anything."""
    if not exc.errors:
        return "SpecError without items"
    for e in exc.errors:
        if e.line is None or e.col is None:
            return f"error without a line/column: {e}"
    return None


def run_case(text: str, *, build: bool = True, summary: bool = False) -> Outcome:
    """Run one spec text through the public entry points; an Outcome says whether all is well."""
    import specnet

    spec: Any = None

    def load() -> Any:
        nonlocal spec
        spec = specnet.load(text)

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("load", load),
        ("validate", lambda: specnet.validate(spec)),
    ]
    if build:
        stages.append(("build", lambda: specnet.build(spec, device="meta")))
    if summary:
        stages.append(("summary", lambda: str(specnet.summary(spec))))
    for stage, call in stages:
        try:
            result = call()
        except specnet.SpecError as exc:
            problem = check_errors(exc)
            if problem:
                return Outcome(False, stage, problem)
            if stage in ("build", "summary"):
                # validate passed, the build refused: not a crash, but validate should
                # have said so (tests/test_validate_is_build.py's property)
                return Outcome(True, stage, "validate passed, build refused: " + str(exc))
            return Outcome(True)
        except Slow:
            return Outcome(False, stage, "slow: " + traceback.format_exc())
        except Exception:  # anything but a SpecError is a finding
            return Outcome(False, stage, traceback.format_exc())
        if stage == "validate" and result:
            if any(":" not in line.split(" ", 1)[0] for line in result):
                return Outcome(False, stage, "unlocated error lines: " + "\n".join(result))
            return Outcome(True)
    return Outcome(True)


def _alarm(signum: int, frame: Any) -> None:
    raise Slow


def _warm() -> None:
    """Import torch and build once before any case runs under the alarm."""
    import torch._dynamo  # noqa: F401  (imported by torch's init functions on first use)

    run_case("input: [3]\nmodel: {type: Linear, out_features: 2}\n", summary=True)


def _worker(args: tuple[int, int, int, float, int]) -> tuple[int, Outcome, float]:
    seed, n, summary_every, slow, _ = args
    text = case_text(seed, n)
    # CPU time, not wall time: a loaded machine does not make a case slow.
    signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, slow)
    start = time.perf_counter()
    try:
        outcome = run_case(text, summary=summary_every > 0 and n % summary_every == 0)
    except Slow:
        outcome = Outcome(False, "?", "slow")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return n, outcome, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--slow", type=float, default=3.0, help="CPU seconds a case may take")
    parser.add_argument("--summary-every", type=int, default=10)
    parser.add_argument("--only", type=int, help="replay one case and print its text")
    args = parser.parse_args(argv)
    if args.only is not None:
        text = case_text(args.seed, args.only)
        print(text)
        print(run_case(text, summary=True))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    failures = 0
    work = [(args.seed, n, args.summary_every, args.slow, 0) for n in range(args.cases)]
    if args.jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(args.jobs, initializer=_warm)
        results: Any = pool.imap_unordered(_worker, work, chunksize=20)
    else:
        pool = None
        _warm()
        results = map(_worker, work)
    done = disagreements = 0
    for n, outcome, seconds in results:
        done += 1
        if outcome.ok and outcome.detail:
            disagreements += 1
            (args.out / "disagreements").mkdir(exist_ok=True)
            (args.out / "disagreements" / f"case-{n}.txt").write_text(outcome.detail)
        if not outcome.ok:
            failures += 1
            (args.out / f"case-{n}.yaml").write_text(case_text(args.seed, n))
            (args.out / f"case-{n}.txt").write_text(
                f"seed {args.seed} case {n} stage {outcome.stage} ({seconds:.2f} s)\n\n"
                + outcome.detail
            )
        if done % 5000 == 0:
            print(
                f"{done} cases, {failures} failures, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    if pool is not None:
        pool.close()
        pool.join()
    took = time.perf_counter() - start
    print(
        f"cases {done} failures {failures} time {took:.0f} s seed {args.seed} "
        f"(validate passed, build refused: {disagreements})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
