"""Every example spec, found recursively, is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

import specnet

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").rglob("*.yaml"))
MODELINE = "# yaml-language-server: $schema="
ROOT = Path(__file__).resolve().parent.parent / "examples"


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=_name)
def test_example_is_valid(path: Path) -> None:
    assert specnet.validate(path) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=_name)
def test_example_binds_the_schema_for_editors(path: Path) -> None:
    first = path.read_text("utf-8").splitlines()[0]
    assert first.startswith(MODELINE)
    target = (path.parent / first.removeprefix(MODELINE).strip()).resolve()
    assert target == (Path(__file__).resolve().parent.parent / "schemas" / "specnet.schema.json")
