"""The published JSON Schema: up to date, valid, and in agreement with validation."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import specnet
from specnet._front.schema import schema_text
from specnet._front.source import read_document

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "specnet.schema.json"
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
BAD = sorted(p for p in (ROOT / "tests" / "bad").glob("*") if p.suffix in (".yaml", ".json"))
SCHEMA_BLIND = "# schema-blind:"
"""Marks a bad spec whose error JSON Schema cannot express (references between
names, block parameters, ...); the reason follows the marker."""


@cache
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    return jsonschema.Draft7Validator(schema)


def schema_accepts(path: Path) -> bool:
    try:
        doc = read_document(path)
    except specnet.SpecError:
        return False  # not even readable: both sides reject
    if doc.errors:
        return False  # duplicate keys: the document is not what it says
    data: Any = doc.data
    return validator().is_valid(data)


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA.read_text("utf-8") == schema_text(), "run: specnet schema"


def test_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA.read_text("utf-8")))


def _pointer(schema: Any, ref: str) -> Any:
    node = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_field_has_a_description() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    missing = []
    for name, d in schema["definitions"].items():
        for prop, sub in d.get("properties", {}).items():
            while set(sub) == {"$ref"}:  # a Graph node's keys refer to its layer's
                sub = _pointer(schema, sub["$ref"])
            if "description" not in sub:
                missing.append(f"{name}.{prop}")
    assert missing == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_every_example(path: Path) -> None:
    errors = [e.message for e in validator().iter_errors(read_document(path).data)]
    assert errors == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_schema_and_validation_agree_on_bad_specs(path: Path) -> None:
    with pytest.raises(specnet.SpecError):
        specnet.build(path)
    text = path.read_text("utf-8", errors="replace")
    blind = SCHEMA_BLIND in text
    assert schema_accepts(path) == blind, (
        "JSON Schema accepts this spec; mark it '# schema-blind: <why>' if the schema cannot express the rule"
        if not blind
        else "JSON Schema rejects this spec although it is marked schema-blind"
    )


def test_schema_blind_cases_are_few() -> None:
    blind = [p for p in BAD if SCHEMA_BLIND in p.read_text("utf-8", errors="replace")]
    assert len(blind) <= len(BAD) // 3


def test_check_jsonschema_cli_accepts_examples() -> None:
    exe = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(exe), "--schemafile", str(SCHEMA), *map(str, EXAMPLES)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_accepts_the_schema_against_its_metaschema() -> None:
    exe = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(exe), "--check-metaschema", str(SCHEMA)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_has_a_stable_versioned_id() -> None:
    from specnet._front.schema import SCHEMA_ID

    schema = json.loads(SCHEMA.read_text("utf-8"))
    assert schema["$id"] == SCHEMA_ID
    assert SCHEMA_ID.startswith("https://") and "/v1/" in SCHEMA_ID  # the format's version
    editors = (ROOT / "docs" / "editors.md").read_text("utf-8")
    assert SCHEMA_ID in editors


def _descriptions(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["description"]] if isinstance(node.get("description"), str) else []
        return own + [d for v in node.values() for d in _descriptions(v)]
    if isinstance(node, list):
        return [d for v in node for d in _descriptions(v)]
    return []


def test_each_description_says_its_default_once() -> None:
    texts = _descriptions(json.loads(SCHEMA.read_text("utf-8")))
    twice = [t for t in texts if t.count("Default:") > 1 or t.count("Default ") > 1]
    assert twice == []
    # torch's own "Default: ``False``" gives way to the spec's spelling, from the signature
    conv = json.loads(SCHEMA.read_text("utf-8"))["definitions"]["layer.Conv2d"]["properties"]
    assert conv["bias"]["description"].endswith("Default: true.")
    assert conv["padding_mode"]["description"].endswith('Default: "zeros".')
    assert "``" not in conv["bias"]["description"]


def test_the_installed_package_names_its_schema_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "specnet", "schema", "--path"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).read_text("utf-8") == SCHEMA.read_text("utf-8")
    assert specnet.schema_path().read_text("utf-8") == SCHEMA.read_text("utf-8")
    printed = subprocess.run(
        [sys.executable, "-m", "specnet", "schema", "--print"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == SCHEMA.read_text("utf-8")
