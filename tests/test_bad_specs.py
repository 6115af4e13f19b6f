"""A corpus of bad specs: each yields located errors, never a traceback.

Each file in tests/bad/ states what it expects, one line per error:
``# expect: LINE:COL PATH: FRAGMENT`` (COL may be ``*``); files that cannot hold
comments (JSON, an empty file) keep these lines in ``NAME.expect`` beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import specnet
from specnet import SpecError
from specnet._front.errors import format_path

BAD = Path(__file__).resolve().parent / "bad"
FILES = sorted(p for p in BAD.glob("*") if p.suffix in (".yaml", ".json"))
EXPECT = re.compile(r"^#\s*expect:\s*(\d+):(\d+|\*)\s+(\S+):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Expected:
    line: int
    col: int | None
    path: str
    fragment: str


def expectations(path: Path) -> list[Expected]:
    sidecar = path.with_name(path.name + ".expect")
    source = sidecar if sidecar.exists() else path
    out = []
    for line in source.read_text("utf-8", errors="replace").splitlines():
        m = EXPECT.match(line.strip())
        if m:
            col = None if m.group(2) == "*" else int(m.group(2))
            out.append(Expected(int(m.group(1)), col, m.group(3), m.group(4).lower()))
    return out


def test_corpus_is_large() -> None:
    assert len(FILES) >= 50


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_bad_spec_gives_located_errors(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} states no '# expect:' line"
    with pytest.raises(SpecError) as info:
        specnet.build(path)  # validation, then shape inference
    errors = info.value.errors
    for err in errors:
        assert err.file == str(path)
        assert err.line is not None and err.col is not None, str(err)
    for want in expected:
        found = [
            e
            for e in errors
            if e.line == want.line
            and (want.col is None or e.col == want.col)
            and format_path(e.path) == want.path
            and want.fragment in e.msg.lower()
        ]
        assert found, f"expected {want}\ngot:\n" + "\n".join(str(e) for e in errors)
