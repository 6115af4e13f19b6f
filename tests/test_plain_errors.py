"""Errors in the words of the spec, not of the parser or of Pydantic.

A hand-edited spec's syntax errors are located where the mistake is and say what it is
(an indentation, a quote or bracket never closed, a ':' missing), whichever YAML parser
reads it; the ``train:`` section says ``expected int >= 1, got 0`` as the model's
arguments do; a dtype has one spelling, and the names are listed when it is unknown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

import specnet
from specnet import SpecError, SpecSyntaxError
from specnet._front import syntax
from specnet._front.source import read_document
from specnet._front.spec import DTYPE_ALIASES, DTYPES
from specnet._front.trainspec import _SETTINGS, COMPONENT_KEYS, TrainSpec, setting_problem
from specnet._front.validate.args import pydantic_problem

PARSERS = [
    pytest.param(getattr(yaml, "CSafeLoader", None), id="libyaml"),
    pytest.param(yaml.SafeLoader, id="pyyaml"),
]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test with libyaml's parser and with PyYAML's: their messages differ."""
    if request.param is None:
        pytest.skip("PyYAML without libyaml")
    monkeypatch.setattr(syntax, "PARSER", request.param)


def syntax_error(text: str) -> str:
    with pytest.raises(SpecSyntaxError) as info:
        read_document(text)
    [err] = info.value.errors
    return str(err)


# (spec text, the located message). Lines and columns count from 1.
MISTAKES = {
    "key indented more than the one above": (
        "input: [1, 28, 28]\nmodel:\n  type: Sequential\n    layers:\n    - ReLU\n",
        "<spec>:4:5: <root>: this key is indented more than the keys above it "
        "(4 spaces instead of 2)",
    ),
    "key indented less than the one above": (
        "input: [1, 28, 28]\nmodel:\n  type: Sequential\n layers:\n    - ReLU\n",
        "<spec>:4:2: <root>: this key is indented less than the keys above it "
        "(1 space instead of 2)",
    ),
    "key under-indented to its parent's level (the parser fails a line later)": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers:\n"
        "    fc1: {type: Linear, out_features: 16}\n    relu: ReLU\n"
        "  fc2: {type: Linear, out_features: 4}\n    out: Softmax\n",
        "<spec>:7:3: <root>: this key is indented less than the keys above it "
        "(2 spaces instead of 4)",
    ),
    "the first key of a block is the odd one out": (
        "input: [8]\nmodel:\n type: Sequential\n  layers:\n"
        "    fc1: {type: Linear, out_features: 16}\n    relu: ReLU\n",
        "<spec>:3:2: <root>: this key is indented less than the keys below it "
        "(1 space instead of 2)",
    ),
    "list item indented less than the one above": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers:\n    - Flatten\n   - ReLU\n",
        "<spec>:6:4: <root>: this list item (- ...) is indented less than the items above it "
        "(3 spaces instead of 4)",
    ),
    "argument of a list item's layer under-indented": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers:\n    - type: Linear\n"
        "     out_features: 4\n      bias: false\n",
        "<spec>:6:6: <root>: this key is indented less than the keys below it "
        "(5 spaces instead of 6)",
    ),
    "optimizer argument under-indented": (
        "input: [8]\nmodel: {type: Linear, out_features: 2}\ntrain:\n  optimizer:\n"
        "    type: SGD\n   lr: 0.1\n  epochs: 3\n",
        "<spec>:6:4: <root>: this key is indented less than the keys above it "
        "(3 spaces instead of 4)",
    ),
    "a key after a list, at the items' indentation": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers:\n    - ReLU\n    type: Tanh\n",
        "<spec>:6:5: <root>: this key is indented more than the keys above it "
        "(4 spaces instead of 2)",
    ),
    "tab": (
        "input: [8]\nmodel:\n\ttype: ReLU\n",
        "<spec>:3:1: <root>: a tab character: YAML indents with spaces "
        "(replace the tab with spaces)",
    ),
    "double quote never closed": (
        'input: [8]\nmodel:\n  type: "Sequential\n  layers: [ReLU]\n',
        '<spec>:3:9: <root>: this " is never closed: a quoted value ends with the same "',
    ),
    "single quote never closed": (
        "input: [8]\nmodel: {type: 'ReLU}\n",
        "<spec>:2:15: <root>: this ' is never closed: a quoted value ends with the same '",
    ),
    "bracket never closed": (
        "input: [1, 28, 28\nmodel: ReLU\n",
        "<spec>:1:8: <root>: this [ is never closed (no ] for it)",
    ),
    "brace never closed": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Linear, out_features: 4\n    - ReLU\n",
        "<spec>:5:7: <root>: this { is never closed (no } for it)",
    ),
    "bracket closing nothing": (
        "input: [8]]\nmodel: ReLU\n",
        "<spec>:1:11: <root>: this ] closes nothing: is it one too many?",
    ),
    "list item where a key was expected": (
        "input: [8]\nmodel:\n  type: Sequential\n  - ReLU\n",
        "<spec>:4:3: <root>: a list item (- ...) where a key was expected: a list is the "
        "value of a key ('layers:'), its items indented under it",
    ),
    "second ': ' in a plain value": (
        "input: [8]\nname: resnet: small\nmodel: ReLU\n",
        "<spec>:2:13: <root>: a second ':' on this line: if it belongs to the value, put the "
        'value in quotes: name: "resnet: small"',
    ),
    "second ': ' inside {...}": (
        "input: [8]\nmodel: {type: Linear, out_features: 4, note: a: b}\n",
        "<spec>:2:47: <root>: a second ':' in one value: put the value in quotes",
    ),
    "no space after ':'": (
        "input: [8]\nmodel:\n  type:ReLU\n  inplace: true\n",
        "<spec>:3:7: <root>: a ':' needs a space after it: write 'type: ReLU'",
    ),
    "no ':' after a key with a value": (
        "input: [8]\nmodel:\n  type Sequential\n  layers: [ReLU]\n",
        "<spec>:3:3: <root>: this line has no ':' after its key (write 'name: value'), so "
        "the key on the next line reads as more of its text",
    ),
    "no ':' after a key of a block": (
        "input: [8]\nmodel\n  type: ReLU\n",
        "<spec>:2:1: <root>: ':' is missing after 'model' (a key is written 'model: ...')",
    ),
    "no ',' between two arguments": (
        "input: [8]\nmodel: {type: Linear out_features: 4}\n",
        "<spec>:2:22: <root>: a ',' is missing before this key",
    ),
    "two ',' in a row": (
        "input: [8,, 2]\nmodel: ReLU\n",
        "<spec>:1:11: <root>: a value is missing before this ','",
    ),
    "reserved first character": (
        "input: [8]\nmodel: @ReLU\n",
        "<spec>:2:8: <root>: a key or value cannot start with '@': put it in quotes",
    ),
    "text after a closing quote": (
        'input: [8]\nmodel: "ReLU" Tanh\n',
        "<spec>:2:15: <root>: text after the closing quote: put all of the value inside the quotes",
    ),
    "list item on its key's line": (
        "input: [8]\nmodel:\n  type: Sequential\n  layers: - ReLU\n",
        "<spec>:4:11: <root>: a list item (- ...) cannot follow a key on its line: put the "
        "items on the lines below, indented, or write [a, b]",
    ),
    "backslash in a double-quoted value": (
        'input: [8]\nname: "C:\\new\\q"\nmodel: ReLU\n',
        "<spec>:2:14: <root>: '\\q' is not a valid escape in a double-quoted value: use "
        "single quotes for text with backslashes, or write '\\\\' for one",
    ),
    "'*' alone": (
        "input: [*]\nmodel: ReLU\n",
        "<spec>:1:9: <root>: '*' starts an alias (*name): put the value in quotes if it is text",
    ),
    "control character": (
        "input: [8]\nmodel: Re\x07LU\n",
        "<spec>:2:10: <root>: the control character U+0007 is not allowed in a spec",
    ),
}


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(("text", "message"), MISTAKES.values(), ids=list(MISTAKES))
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    assert syntax_error(text) == message


def test_an_under_indented_key_is_reported_at_its_line_not_where_the_parser_fails() -> None:
    text, message = MISTAKES[
        "key under-indented to its parent's level (the parser fails a line later)"
    ]
    with pytest.raises(yaml.MarkedYAMLError) as info:
        list(yaml.parse(text, Loader=syntax.PARSER))
    assert info.value.problem_mark is not None
    assert info.value.problem_mark.line + 1 == 8  # PyYAML's mark: one line late
    assert message.startswith("<spec>:7:3:")
    assert syntax_error(text) == message


BROKEN = [text for text, _ in MISTAKES.values()] + [
    "a: {b: 1} x\n",
    "a: 1\n...\nb: 2\n",
    "a: |x\n  y\n",
    "a: ]\n",
    "? [1]\n",
    ": 1\n",
    "%TAG x\na: 1\n",
]


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize("text", BROKEN)
def test_no_parser_jargon_reaches_the_user(text: str) -> None:
    message = syntax_error(text)
    for jargon in ("while parsing", "while scanning", "did not find", "<block", "<stream"):
        assert jargon not in message


def test_every_shifted_line_of_an_example_is_found() -> None:
    """Each line of a real spec indented one space more or less: the error is at it."""
    lines = (Path(__file__).parent.parent / "examples/digits_cnn.yaml").read_text().split("\n")
    checked = 0
    for i, line in enumerate(lines):
        body = line.lstrip(" ")
        if not body or body.startswith("#") or not line.startswith("    "):
            continue  # keys with siblings and children: an ambiguity elsewhere
        for shift in (-1, 1):
            shifted = [*lines[:i], " " * (len(line) - len(body) + shift) + body, *lines[i + 1 :]]
            try:
                read_document("\n".join(shifted))
            except SpecSyntaxError as exc:
                [err] = exc.errors
                assert err.line == i + 1, f"line {i + 1} shifted {shift}: {err}"
                assert "indented" in err.msg
                checked += 1
    assert checked >= 10


def test_messages_left_unmapped_are_the_problem_alone() -> None:
    mark = yaml.Mark("<spec>", 3, 0, 3, "abc", 3)
    exc = yaml.MarkedYAMLError("while parsing a frobnicator", mark, "found a frob", mark)
    item = syntax.syntax_error("abc", exc, "x.yaml")
    assert str(item) == "x.yaml:1:4: <root>: not valid YAML: found a frob"


def test_the_search_for_the_line_to_fix_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    parse = syntax._parse_lines

    def counted(lines: list[str]) -> tuple[set[int], float]:
        calls.append(1)
        return parse(lines)

    monkeypatch.setattr(syntax, "_parse_lines", counted)
    layers = "".join(f"    fc{i}: {{type: Linear, out_features: 4}}\n" for i in range(30_000))
    text = "input: [8]\nmodel:\n  type: Sequential\n  layers:\n" + layers + "   bad: ReLU\n"
    assert len(text) > 1_000_000
    message = syntax_error(text)
    assert message.startswith(f"<spec>:{30_005}:4: <root>: this key is indented less")
    assert len(calls) <= 1 + syntax._FIX_CHARS // len(text)


JSON_MISTAKES = {
    "missing ',' between items": (
        '{\n  "input": [8],\n  "model": {"type": "Sequential", "layers": [\n'
        '    {"type": "Linear", "out_features": 4}\n    {"type": "ReLU"}\n  ]}\n}\n',
        "5:5: <root>: a ',' is missing before this value",
    ),
    "missing ',' between keys": (
        '{\n  "input": [8]\n  "model": "ReLU"\n}\n',
        "3:3: <root>: a ',' is missing before this key",
    ),
    "missing ':'": (
        '{"input" [8], "model": "ReLU"}\n',
        "1:2: <root>: this key has no ':' after it",
    ),
    "never closed": (
        '{\n  "input": [8],\n  "model": {"type": "ReLU"}\n',
        "1:1: <root>: this { is never closed (no } for it)",
    ),
    "one '}' too many": (
        '{"input": [8], "model": "ReLU"}}\n',
        "1:32: <root>: this } closes nothing: is it one too many?",
    ),
}


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(("text", "message"), JSON_MISTAKES.values(), ids=list(JSON_MISTAKES))
def test_json_files_get_the_same_plain_words(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(SpecSyntaxError) as info:
        read_document(path)
    assert [str(e) for e in info.value.errors] == [f"{path}:{message}"]


# -- one wording for values of the wrong type -----------------------------------------


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        specnet.load(text)
    return [str(e).removeprefix("<spec>:") for e in info.value.errors]


def test_train_settings_are_worded_as_layer_arguments() -> None:
    text = """\
input: [4]
model: {type: Linear, out_features: x}
train:
  epochs: x
  batch_size: 0
  metrics: [accuracy, 3]
  loss_weights: []
  clip_grad_norm: -1
  precision: fp8
  device: gpu
  compile: yes
  seed: 1.5
  grad_accum_steps: true
  optimizer: 3
  epoch: 2
"""
    assert errors(text) == [
        "2:37: model.out_features: expected int >= 1, got 'x'",
        "4:11: train.epochs: expected int >= 1, got 'x'",
        "5:15: train.batch_size: expected int >= 1, got 0",
        "6:23: train.metrics[1]: expected one of 'accuracy', 'top5_accuracy', 'mse', 'mae', got 3",
        "7:17: train.loss_weights: expected non-empty list of float or null, got []",
        "8:19: train.clip_grad_norm: expected float > 0 or null, got -1",
        "9:14: train.precision: expected one of 'fp32', 'bf16', 'fp16', got 'fp8'",
        "10:11: train.device: expected one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', got 'gpu'",
        "11:12: train.compile: expected bool, got 'yes' (write true or false)",
        "12:9: train.seed: expected int, got 1.5",
        "13:21: train.grad_accum_steps: expected int >= 1, got true",
        "14:14: train.optimizer: expected an optimizer name or a mapping with 'type', got 3",
        "15:3: train.epoch: unknown train setting 'epoch'; did you mean 'epochs'?",
    ]


def test_a_list_item_of_the_wrong_type_is_located_at_the_item() -> None:
    text = "input: [4]\nmodel: {type: Linear, out_features: 2}\ntrain:\n  loss_weights: [1.0, a]\n"
    assert errors(text) == ["4:23: train.loss_weights[1]: expected float, got 'a'"]


def test_every_train_setting_has_words() -> None:
    """A setting added to TrainSpec gets the common wording, or this fails."""
    assert set(_SETTINGS) == set(TrainSpec.model_fields) - set(COMPONENT_KEYS)


def test_no_pydantic_wording_is_left_for_any_setting() -> None:
    bad: dict[str, object] = {name: object() for name in _SETTINGS}
    with pytest.raises(ValidationError) as info:
        TrainSpec.model_validate(bad)
    for err in info.value.errors(include_url=False):
        where, msg = setting_problem(err)
        assert where[0] in _SETTINGS
        assert msg.startswith("expected "), msg
        assert "Input should" not in msg


class _Small(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    n: int
    x: float = 0.0
    flag: bool = False
    name: str = ""


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"n": "3"}, "expected int, got '3'"),
        ({"n": 1, "x": "a"}, "expected float, got 'a'"),
        ({"n": 1, "flag": "no"}, "expected bool, got 'no' (write true or false)"),
        ({"n": 1, "name": 3}, "expected str, got 3"),
        ({"n": 1, "m": 2}, "unknown key 'm'"),
        ({}, "missing 'n'"),
    ],
)
def test_pydantic_error_types_get_the_common_wording(
    given: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        _Small.model_validate(given)
    assert [pydantic_problem(e) for e in info.value.errors(include_url=False)] == [message]


# -- dtypes: one spelling each, the names listed ---------------------------------------


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        (
            "long",
            "unknown dtype 'long' (the dtypes are float32, float64, float16, bfloat16, int64, "
            "int32, int16, int8, uint8, bool); did you mean 'int64'?",
        ),
        ("int", "did you mean 'int32'?"),
        ("float", "did you mean 'float32'?"),
        ("double", "did you mean 'float64'?"),
        ("half", "did you mean 'float16'?"),
        ("torch.int64", "did you mean 'int64'?"),
        ("Float32", "did you mean 'float32'?"),
        ("int65", "did you mean 'int64' or 'int16'?"),
        ("complex64", "uint8, bool)"),
    ],
)
def test_an_unknown_input_dtype_lists_the_names(dtype: str, message: str) -> None:
    [err] = errors(f"input: {{shape: [3], dtype: {dtype}}}\nmodel: ReLU\n")
    assert err.startswith("1:28: input.dtype: unknown dtype")
    assert err.endswith(message)


def test_a_dtype_that_is_not_a_name() -> None:
    assert errors("input: {shape: [3], dtype: 8}\nmodel: ReLU\n") == [
        "1:28: input.dtype: expected a dtype name (float32, float64, float16, bfloat16, "
        "int64, int32, int16, int8, uint8, bool), got 8"
    ]


def test_learned_tensors_and_ops_name_dtypes_the_same_way() -> None:
    text = """\
input: [3, 4]
model:
  type: Graph
  nodes:
    p: {type: Parameter, shape: [1, 4], dtype: double}
    m: {type: CausalMask, dtype: long}
    add: {type: Add, input: [input, p]}
"""
    assert errors(text) == [
        "5:48: model.nodes.p.dtype: unknown dtype 'double' (the dtypes are float32, float64, "
        "float16, bfloat16, int64, int32, int16, int8, uint8, bool); did you mean 'float64'?",
        "6:34: model.nodes.m.dtype: dtype 'long' is not allowed here: the dtypes here are "
        "bool, float16, bfloat16, float32, float64",
    ]


def test_each_alias_names_a_dtype_of_torch() -> None:
    torch = pytest.importorskip("torch")
    for alias, name in DTYPE_ALIASES.items():
        assert name in DTYPES
        if hasattr(torch, alias):  # torch.long ...; fp16 and the like are precision names
            assert getattr(torch, alias) is getattr(torch, name), alias
