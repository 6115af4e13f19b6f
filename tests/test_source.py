"""Reading spec text: positions, YAML 1.2 scalars, and safety against hostile input."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

import specnet
from specnet import SpecError, SpecSyntaxError
from specnet._front import source
from specnet._front.limits import MAX_BYTES, MAX_DEPTH, MAX_NODES
from specnet._front.source import read_document


def test_positions_of_keys_and_values() -> None:
    doc = read_document("a: 1\nb:\n  - x\n  - {c: 2}\n")
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}]}
    assert doc.source.values[("a",)] == (1, 4)
    assert doc.source.keys[("b",)] == (2, 1)
    assert doc.source.values[("b", 1, "c")] == (4, 9)
    # A path without a position of its own falls back to its nearest ancestor.
    assert doc.source.position(("b", 1, "c", "missing")) == (4, 9)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),
        ("1.5", 1.5),
        ("-2", -2),
        ("0x1f", 31),
        ("0o17", 15),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("no", "no"),  # YAML 1.1 read this as false; 1.2 (JSON, the editors) as a string
        ("on", "on"),
        ("'3'", "3"),
        ("2001-12-14", "2001-12-14"),  # no timestamp objects
        (".inf", float("inf")),
        ("!!str 3", "3"),
        ("!!float 3", 3.0),
    ],
)
def test_scalars_follow_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert read_document(f"v: {text}\n").data == {"v": value}


def test_duplicate_keys_are_reported_not_dropped() -> None:
    doc = read_document("a: 1\nb: 2\na: 3\n")
    assert doc.data["a"] == 1
    [err] = doc.errors
    assert (err.line, err.col) == (3, 1)
    assert "duplicate key 'a' (first at line 1)" in err.msg


def test_merge_keys_keep_explicit_values() -> None:
    doc = read_document("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert doc.data["use"] == {"x": 1, "y": 3}


def test_merge_keys_written_in_place_merge_with_their_positions() -> None:
    # `<<:` followed by a mapping (or a list of them) written in place, not an alias: its
    # keys are merged once it is read, each at its own position, explicit keys winning.
    doc = read_document("m:\n  out: 2\n  <<:\n    bias: false\n    out: 3\n  after: 1\n")
    assert doc.data["m"] == {"out": 2, "bias": False, "after": 1}
    assert doc.source.keys[("m", "bias")] == (4, 5)
    doc = read_document("m: {<<: [{a: 1}, {a: 2, b: 3}], b: 4}\n")
    assert doc.data["m"] == {"a": 1, "b": 4}


def test_an_unknown_argument_in_a_merge_is_located_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "input: [4]\nmodel:\n  type: Linear\n  out_features: 2\n"
        "  <<:\n    bias: false\n    bogus_key: 1\n"
    )
    with pytest.raises(SpecError) as info:
        specnet.build(path)
    assert f"{path}:7:5: model.bogus_key: unknown argument 'bogus_key' for Linear" in str(
        info.value
    )
    path.write_text(path.read_text().replace("    bogus_key: 1\n", ""))
    assert specnet.build(path).bias is None


def test_json_text_and_files(tmp_path: Path) -> None:
    p = tmp_path / "spec.json"
    p.write_text(json.dumps({"input": [3], "model": "ReLU"}, indent=1))
    doc = read_document(p)
    assert doc.data == {"input": [3], "model": "ReLU"}
    assert doc.source.file == str(p)
    assert doc.source.values[("model",)] == (5, 11)
    assert read_document(str(p)).data == doc.data


def test_mapping_input_is_copied() -> None:
    data = {"input": [3], "model": {"type": "Linear", "out_features": 2}}
    doc = read_document(data)
    doc.data["model"]["out_features"] = 5
    assert data["model"]["out_features"] == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "a: !!python/object/apply:os.system ['echo hi']\n",
            "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        ),
        ("a: !foo 1\n", "tag '!foo' is not allowed"),
        ("a: !!binary aGk=\n", "is not allowed"),
        ("a: 1\n---\nb: 2\n", "found a second"),
        ("a: [1, 2\n", "this [ is never closed"),
        ("a:\n\t- 1\n", "a tab character: YAML indents with spaces"),
        ("a: *nothing\n", "refers to no finished anchor"),
        ("? [1, 2]\n: x\n", "mapping keys must be plain strings"),
        ("a: !!int x\n", "not a valid !!int"),
    ],
)
def test_bad_yaml_is_a_located_syntax_error(text: str, fragment: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        read_document(text)
    [err] = info.value.errors
    assert fragment in err.msg
    assert err.line is not None


def test_alias_bomb_is_refused_quickly_in_bounded_memory() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    with pytest.raises(SpecSyntaxError) as info:
        read_document(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert f"more than {MAX_NODES} values" in str(info.value)
    assert peak < 200 * 1024 * 1024


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    text = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(SpecSyntaxError) as info:
        read_document(text)
    assert f"more than {MAX_DEPTH} levels" in str(info.value)


def test_huge_documents_are_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*args: object) -> None:
        raise AssertionError("the parser ran on a document over the size limit")

    monkeypatch.setattr(source.syntax, "PARSER", no_parsing)
    p = tmp_path / "huge.yaml"
    p.write_text("a: " + "x" * (MAX_BYTES + 1) + "\n")
    with pytest.raises(SpecSyntaxError, match="larger than"):
        read_document(p)
    with pytest.raises(SpecSyntaxError, match="larger than"):
        read_document("a: " + "x" * (MAX_BYTES + 1))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecSyntaxError, match="cannot read spec"):
        read_document(tmp_path / "missing.yaml")
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"a: \xe9\n")
    with pytest.raises(SpecSyntaxError, match="not UTF-8"):
        read_document(p)


def _chain(depth: int) -> str:
    return "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, depth))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 150, 500])
def test_chained_aliases_count_toward_the_depth(
    depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each alias nests the one before; the depth limit counts them expanded, so the copy
    # that would go past it (and, at 500, recurse past Python's stack) never happens.
    real = source.copy.deepcopy
    copies: list[int] = []

    def counted(value: object) -> object:
        copies.append(1)
        return real(value)

    monkeypatch.setattr(source.copy, "deepcopy", counted)
    with pytest.raises(SpecSyntaxError, match=f"more than {MAX_DEPTH} levels") as info:
        read_document(_chain(depth))
    [err] = info.value.errors
    assert err.line == MAX_DEPTH  # a63 would nest 65 levels: the top mapping and 64 lists
    assert "a fixed limit" in err.msg
    assert len(copies) < MAX_DEPTH


def test_chained_aliases_within_the_depth_are_read() -> None:
    doc = read_document(_chain(MAX_DEPTH - 2))
    value = doc.data[f"a{MAX_DEPTH - 3}"]
    for _ in range(MAX_DEPTH - 3):
        [value] = value
    assert value == [1]


@pytest.mark.parametrize(
    "literal", ["9223372036854775808", "-9223372036854775809", "1" * 5000, "0x" + "f" * 17]
)
def test_integers_past_64_bits_are_refused_where_written(literal: str) -> None:
    # int() of a 5000-digit string raises ValueError (and costs quadratic time): refused first.
    with pytest.raises(SpecSyntaxError, match="outside the 64-bit range") as info:
        read_document(f"input: [3]\nmodel: {{type: Linear, out_features: {literal}}}\n")
    [err] = info.value.errors
    assert (err.line, err.col) == (2, 37)


def test_64_bit_integers_are_read() -> None:
    doc = read_document("a: 9223372036854775807\nb: -9223372036854775808\n")
    assert doc.data == {"a": 2**63 - 1, "b": -(2**63)}


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n  \n"])
def test_an_empty_document_is_located_at_the_start(text: str) -> None:
    import specnet

    with pytest.raises(specnet.SpecError) as info:
        specnet.load(text)
    [err] = info.value.errors
    assert (err.line, err.col) == (1, 1)
    assert str(err).startswith("<spec>:1:1: <root>: ")
