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


def test_every_field_has_a_description() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    missing = []
    for name, d in schema["definitions"].items():
        for prop, sub in d.get("properties", {}).items():
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
