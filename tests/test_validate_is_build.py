"""``validate`` accepts exactly what ``build`` accepts, and what it accepts trains.

A seeded, structure-aware generator starts from each layer's valid samples (the cases
``test_shape_rules`` checks against torch) and mutates their arguments: values of the
right and the wrong type, edge numbers (negative, zero, huge, fractions), removed
arguments. For every generated spec, ``specnet.validate`` reports no error exactly when
``specnet.build(..., device="meta")`` succeeds, neither raises anything but a located
:class:`SpecError`, and every error carries a line and column. A layer whose spec validates
also runs: torch checks some arguments only in ``forward`` or ``backward`` (CELU's ``alpha: 0``,
an RReLU's ``lower > upper``), and those must be refused at the spec line too.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_shape_rules import BATCH, SAMPLES, Ints, Node, Unbatched, Unpool, tensors

import specnet
from specnet._front.registry import CONTAINERS, layers
from specnet._front.types import TypeSpec

CASES = int(os.environ.get("SPECNET_PROPERTY_CASES", "4000"))
"""Generated specs per run (the seed is fixed: a failure reproduces)."""

INTS = (-3, -1, 0, 1, 2, 3, 4, 7, 64, 10**6)
FLOATS = (-1.0, 0.0, 1e-6, 0.5, 1.0, 1.5, 2.0, 1e9)
STRINGS = ("zeros", "same", "valid", "relu", "gelu", "sum", "mean", "tanh", "x")


def _value(t: TypeSpec, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(t, str):
        if t == "int":
            return rng.choice(INTS)
        if t == "float":
            return rng.choice(FLOATS + INTS[:6])
        if t == "bool":
            return rng.random() < 0.5
        if t == "str":
            return rng.choice(STRINGS)
        if t == "null":
            return None
        return rng.choice((1, "x", None, [1]))  # any
    if "enum" in t:
        return rng.choice(t["enum"])
    if "list" in t:
        n = t.get("len", rng.randint(0, 4)) if rng.random() < 0.85 else rng.randint(0, 4)
        return [_value(t["list"], rng, depth + 1) for _ in range(n)]
    if "map" in t:
        return {}
    return _value(rng.choice(t["union"]), rng, depth + 1)


def _wrong(rng: random.Random) -> Any:
    return rng.choice(("3", 2.5, True, None, [], {"a": 1}, "$x"))


def _node(n: Node) -> dict[str, Any]:
    return {"type": n.type, **{k: _plain(v) for k, v in n.args.items()}}


def _plain(v: Any) -> Any:
    return _node(v) if isinstance(v, Node) else v


def _inputs(items: list[Any]) -> list[Any] | None:
    out = []
    for item in items:
        if isinstance(item, list):
            out.append(item)
        elif isinstance(item, Ints):
            out.append({"shape": item.shape, "dtype": item.dtype})
        elif isinstance(item, Unbatched):
            out.append({"shape": item.shape, "dtype": item.dtype, "batch": False})
        else:  # a tuple value, or an unpooling pair: no spec input gives those
            assert isinstance(item, (tuple, Unpool))
            return None
    return out


def _spec(name: str, args: dict[str, Any], inputs: list[Any]) -> dict[str, Any]:
    layer = {"type": name, **args}
    if not inputs:  # a tensor the graph holds
        return {"input": [1], "model": {"type": "Graph", "nodes": {"layer": layer}}}
    if len(inputs) == 1:
        return {"input": inputs[0], "model": layer}
    names = [f"x{i}" for i in range(len(inputs))]
    return {
        "input": dict(zip(names, inputs, strict=True)),
        "model": {"type": "Graph", "inputs": names, "nodes": {"layer": {**layer, "input": names}}},
    }


def _mutate(name: str, args: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    t = layers().get(name) or CONTAINERS[name]
    out = dict(args)
    params = [p for p in t.params if p.type != "node" and "node" not in str(p.type)]
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not params:
            break
        p = rng.choice(params)
        roll = rng.random()
        if roll < 0.08 and p.name in out:
            del out[p.name]
        elif roll < 0.16:
            out[p.name] = _wrong(rng)
        else:
            out[p.name] = _value(p.type, rng)
    return out


EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def _layer_dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            yield value
        for v in value.values():
            yield from _layer_dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _layer_dicts(v)


def _mutate_example(path: Path, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """An example spec with one of its layers' (or containers') arguments mutated."""
    data = yaml.safe_load(path.read_text())
    data.pop("train", None)
    if isinstance(data["model"], str):
        data["model"] = {"type": data["model"]}
    known = [*layers(), *CONTAINERS]
    nodes = [d for d in _layer_dicts(data) if d["type"] in known]
    node = rng.choice(nodes)
    node.update(_mutate(node["type"], {k: v for k, v in node.items() if k != "type"}, rng))
    if rng.random() < 0.1:
        node["repeat"] = rng.choice((0, 1, 2, 3, -1))
    return path.stem, data


_CASES = [
    (name, {k: _plain(v) for k, v in args.items()}, items, inputs)
    for name, group in sorted(SAMPLES.items())
    for args, items in group
    if (inputs := _inputs(items)) is not None
]
"""Each layer sample a spec can write: its type, arguments, inputs (as test_shape_rules
gives them) and the spec's ``input``."""


def generated(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``count`` spec texts, each with the layer type (or example) it mutates."""
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.2:
            what, spec = _mutate_example(rng.choice(EXAMPLES), rng)
        else:
            what, args, _, inputs = rng.choice(_CASES)
            spec = _spec(what, _mutate(what, args, rng), inputs)
        yield what, yaml.safe_dump(spec, sort_keys=False)


def generated_layers(count: int, seed: int) -> Iterator[tuple[str, str, list[Any]]]:
    """``count`` specs of one layer with mutated arguments, each with its type and inputs."""
    rng = random.Random(seed)
    for _ in range(count):
        what, args, items, inputs = rng.choice(_CASES)
        if inputs:  # a tensor a graph holds has no forward
            yield what, yaml.safe_dump(_spec(what, _mutate(what, args, rng), inputs)), items


def _outcome(text: str) -> tuple[list[str], str | None]:
    """validate's errors, and build's: None when it built."""
    errors = specnet.validate(text)
    try:
        specnet.build(text, device="meta")
    except specnet.SpecError as exc:
        for item in exc.errors:
            assert item.line is not None and item.col is not None, f"unlocated: {item}\n{text}"
        return errors, str(exc)
    return errors, None


@pytest.mark.filterwarnings("ignore:enable_nested_tensor:UserWarning")
def test_validate_passes_exactly_when_build_succeeds() -> None:
    disagree = []
    for name, text in generated(CASES):
        errors, built = _outcome(text)
        if (errors == []) != (built is None):
            disagree.append(
                f"{name}: validate {errors or 'passed'}; build {built or 'passed'}\n{text}"
            )
    assert not disagree, f"{len(disagree)} of {CASES} disagree:\n\n" + "\n\n".join(disagree[:10])


BAD = sorted((Path(__file__).parent / "bad").glob("*.*[!t]"))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_the_bad_corpus_fails_validate_and_build_alike(path: Path) -> None:
    errors = specnet.validate(path)
    assert errors, f"{path.name} validates"
    with pytest.raises(specnet.SpecError) as info:
        specnet.build(path, device="meta")
    assert all(e.line is not None for e in info.value.errors), str(info.value)


RUN_CASES = CASES // 3
"""Generated one-layer specs run by the test below (a fixed seed of its own)."""
RUN_ELEMENTS = 1 << 20
"""Largest output, and most parameters, of a generated layer that is run on the CPU (a valid
spec may ask for more memory than the machine has: that is not what is tested)."""


def _real_inputs(items: list[Any]) -> list[Any]:
    """A batch for the layer; integer inputs all 0, an index valid for any mutated table.
    Floating-point inputs require gradients (through one operation, so that an in-place layer
    may write them), so a layer without parameters runs its backward too."""
    xs = tensors(items)
    for i, item in enumerate(items):
        if isinstance(item, Ints):
            xs[i] = torch.zeros((BATCH, *item.shape), dtype=getattr(torch, item.dtype))
        elif isinstance(xs[i], torch.Tensor) and xs[i].is_floating_point():
            xs[i] = xs[i].requires_grad_() * 1
    return xs


def _tensors_of(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_of(v)]
    return []


def _trains(text: str, items: list[Any]) -> str | None:
    """Why torch refuses a training step (forward and backward) or an evaluation of the
    layer ``text`` builds; None when both run (or it is too large to run here)."""
    summary = specnet.summary(text)
    output = math.prod(int(d) for d in re.findall(r"\d+", summary.output))  # at least its size
    if max(output, summary.total_params) > RUN_ELEMENTS:
        return None
    model = specnet.build(text)
    xs = _real_inputs(items)
    try:
        grads = [t for t in _tensors_of(model.train()(*xs)) if t.requires_grad]
        if grads:
            sum(t.float().sum() for t in grads).backward()
        with torch.no_grad():
            model.eval()(*xs)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_layer_that_validates_trains_and_evaluates() -> None:
    torch.manual_seed(0)
    refused, ran = [], 0
    for name, text, items in generated_layers(RUN_CASES, seed=1):
        if specnet.validate(text):
            continue
        ran += 1
        problem = _trains(text, items)
        if problem is not None:
            refused.append(f"{name}: validates, but torch refuses it: {problem}\n{text}")
    assert not refused, f"{len(refused)} of {ran}:\n\n" + "\n\n".join(refused[:10])
