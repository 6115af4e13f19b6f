"""Fuzzing the public entry points: ``load``, ``validate``, ``build(device="meta")`` and
``summary`` raise nothing but a located :class:`SpecError`, whatever the text.

Two sources of cases, both seeded and derandomized (the same cases on every run):

- the examples, mutated structurally by ``bench/fuzz.py``'s mutator (keys deleted, renamed,
  duplicated; values of the wrong type; huge and negative numbers; random layer types;
  ``repeat``; blocks; aliases; unicode; corrupted YAML text);
- specs generated from the published JSON Schema: one layer's (or one optimizer's,
  scheduler's) definition, wrapped into a spec.

``bench/fuzz.py --cases 100000`` runs the long campaign with the same mutator.
``SPECNET_FUZZ_SCALE=10`` runs ten times as many cases here.
"""

from __future__ import annotations

import json
import os
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from bench.fuzz import make_case, run_case

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas/specnet.schema.json").read_text())
DEFS: dict[str, Any] = SCHEMA["definitions"]
SCALE = float(os.environ.get("SPECNET_FUZZ_SCALE", "1"))


def _settings(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@_settings(3000)
@given(st.randoms(use_true_random=False))
def test_mutated_examples_raise_only_located_spec_errors(rng: random.Random) -> None:
    text = make_case(rng)
    outcome = run_case(text, summary=rng.random() < 0.1)
    assert outcome.ok, f"{outcome.stage}: {outcome.detail}\n--- spec ---\n{text[:3000]}"


def _standalone(name: str) -> bool:
    """Whether a definition holds no references (a node nested in a node is recursive)."""
    text = json.dumps(DEFS[name])
    for value in ("param", "index"):  # strings, not nodes
        text = text.replace(f'"$ref": "#/definitions/{value}"', "")
    return "$ref" not in text


LAYERS = sorted(n for n in DEFS if n.startswith("layer.") and _standalone(n))
COMPONENTS = sorted(
    n for n in DEFS if n.split(".")[0] in ("optimizer", "schedule", "loss") and _standalone(n)
)


@cache
def _strategy(name: str) -> st.SearchStrategy[Any]:
    # values may be parameters and expressions: those definitions come along
    strings = {k: DEFS[k] for k in ("param", "index")}
    return from_schema({**DEFS[name], "definitions": strings})


def test_the_schema_sample_is_broad() -> None:
    # The generated specs below cover most layer types and the train components; a schema
    # change that nested them all behind references would leave this test with nothing.
    assert len(LAYERS) > 100
    assert len(COMPONENTS) > 30


_INPUTS = st.lists(st.integers(1, 40), min_size=1, max_size=4) | st.lists(
    st.integers(-3, 2**40), min_size=1, max_size=4
)


@_settings(500)
@given(st.data())
def test_specs_from_the_json_schema_raise_only_located_spec_errors(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(LAYERS), label="layer")
    layer = data.draw(_strategy(name), label="args")
    layer.pop("input", None)
    spec: dict[str, Any] = {"input": data.draw(_INPUTS, label="input"), "model": layer}
    if data.draw(st.booleans(), label="in a Sequential"):
        spec["model"] = {"type": "Sequential", "layers": ["Identity", layer]}
    text = json.dumps(spec)
    outcome = run_case(text)
    assert outcome.ok, f"{outcome.stage}: {outcome.detail}\n--- spec ---\n{text[:3000]}"


@_settings(400)
@given(st.data())
def test_train_components_from_the_json_schema_raise_only_located_spec_errors(
    data: st.DataObject,
) -> None:
    name = data.draw(st.sampled_from(COMPONENTS), label="component")
    section = {"optimizer": "optimizer", "schedule": "schedule", "loss": "loss"}[name.split(".")[0]]
    train: dict[str, Any] = {"data": "Synthetic", "loss": "MSELoss", "optimizer": "SGD"}
    train[section] = data.draw(_strategy(name), label="args")
    text = json.dumps(
        {"input": [3], "model": {"type": "Linear", "out_features": 2}, "train": train}
    )
    outcome = run_case(text, build=False)
    assert outcome.ok, f"{outcome.stage}: {outcome.detail}\n--- spec ---\n{text[:3000]}"


@pytest.mark.parametrize(
    "text",
    [
        "# only a comment\n",
        "",
        "input: [3]\nmodel: {type: Graph, nodes: {a: ReLU}, output: 3}\n",
        "input: [3]\nblocks: {B: {params: {_n: int}, body: ReLU}}\nmodel: {type: B, _n: 3}\n",
        "input: [3, 4, 4]\nmodel: {type: Upsample, scale_factor: 1.0e+308}\n",
        "input: [3]\nmodel: {type: Linear, out_features: 3, repeat: 1000000000000000000}\n",
    ],
)
def test_cases_the_campaign_found(text: str) -> None:
    outcome = run_case(text, summary=True)
    assert outcome.ok, f"{outcome.stage}: {outcome.detail}"
