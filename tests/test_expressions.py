"""The expression language of parameter values: parsed and interpreted, never eval'ed."""

from __future__ import annotations

import math

import pytest

from specnet._front.expr import MAX_EXPRESSION, ExprError, bind, template
from specnet._front.limits import MAX_INT

ENV = {"planes": 64, "k": 5, "c": 30, "width": 1.1, "layers": [2, 3, 4], "s": 2, "name": "M"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$planes * 4", 256),
        ("($k - 1) // 2", 2),
        ("$planes / 2", 32.0),
        ("$planes % 6", 4),
        ("-$k + 1", -4),
        ("max(8, $planes // 32)", 8),
        ("min($layers[0], $layers[-1])", 2),
        ("round($width * 10)", 11),
        ("round($planes, -1)", 60),
        ("round($width, 1)", 1.1),
        ("ceil($layers[1] * $width)", 4),
        ("floor(2.7)", 2),
        ("int($c * $width)", 33),
        ("len($layers)", 3),
        ("$s if $planes > 32 else 1", 2),
        ("$k == 5 and not $s == 1", True),
        ("$name == 'M'", True),
        ("[$k, $k]", [5, 5]),
        ("$layers", [2, 3, 4]),
        ("1 < $k <= 5", True),
    ],
)
def test_expressions_compute_like_python(text: str, value: object) -> None:
    got = bind(text, ENV)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("v", "divisor", "min_value"),
    [(30 * 1.1, 8, None), (16 * 0.35, 8, None), (3, 8, 2), (91, 4, None), (24 * 1.8, 8, None)],
)
def test_make_divisible_is_torchvisions(v: float, divisor: int, min_value: int | None) -> None:
    from torchvision.models._utils import _make_divisible

    env = {"v": v, "d": divisor, "m": min_value}
    text = "make_divisible($v, $d)" if min_value is None else "make_divisible($v, $d, $m)"
    assert bind(text, env) == _make_divisible(v, divisor, min_value)


def test_partial_binding_keeps_the_unknown_names() -> None:
    rest = bind("$s if $index == 0 else 1", {"s": 2})
    assert rest == "2 if $index == 0 else 1"
    assert bind(rest, {"index": 0}) == 2
    assert bind(rest, {"index": 3}) == 1
    assert bind("$layers[$index] - 1", {"layers": [2, 5]}) == "[2, 5][$index] - 1"
    assert bind("$unknown * 2", ENV) == "$unknown * 2"


def test_an_exact_reference_keeps_its_value() -> None:
    value = bind("$layers", ENV)
    assert value == [2, 3, 4]
    assert value is not ENV["layers"]  # a copy: a body cannot change a parameter


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$planes ** 2", "is not allowed"),
        ("$planes.real", "is not allowed"),
        ("__import__('os').system('x') + $k", "is not allowed"),
        ("__import__('os') + $k", "unknown function"),
        ("open('f') + $k", "unknown function"),
        ("[x for x in $layers]", "is not allowed"),
        ("lambda: $k", "is not allowed"),
        ("planes + $k", "a parameter is written $planes"),
        ("$k / 0", "division by zero"),
        ("$k // (1 - 1)", "division by zero"),
        ("$layers[7]", "outside a list"),
        ("$layers * 3", "needs numbers"),
        ("$name + 'x'", "needs numbers"),
        ("$k +", "cannot read"),
        ("max + $k", "is a function"),
        ("9223372036854775807 * $k", str(MAX_INT)),
        ("1e308 * 10.0 * $k", "inf"),
        ("$k < 'a'", "cannot compare"),
        ("make_divisible($k, 0)", "divisor"),
        ("round($planes, -99999999999999)", "MAX_ROUND_DIGITS"),  # 10**n would never end
        ("round($width, 1.5)", "a whole number"),
        ("(" * 300 + "$k" + ")" * 300, str(MAX_EXPRESSION)),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        bind(text, ENV)
    assert fragment in info.value.message


def test_deep_nesting_within_the_length_limit_is_refused_cleanly() -> None:
    text = "(" * 120 + "$k" + ")" * 120
    try:
        assert bind(text, ENV) == 5
    except ExprError as exc:  # the parser's own nesting limit
        assert "cannot read" in exc.message


def test_numbers_stay_bounded_step_by_step() -> None:
    # each step is checked, so a chain of products cannot build a huge integer
    with pytest.raises(ExprError):
        bind(" * ".join(["$big"] * 20), {"big": 10**10})
    assert math.isclose(bind("$w * 3", {"w": 0.1}), 0.3)


def test_names_fill_their_expression_parts() -> None:
    assert template("denselayer{$index + 1}", {"index": 0}) == "denselayer1"
    assert template("encoder_layer_{$index}", {"index": 11}) == "encoder_layer_11"
    assert template("block{$stage}_{$index}", {"stage": 2, "index": 0}) == "block2_0"
    with pytest.raises(ExprError, match="whole number or a word"):
        template("x{$w}", {"w": 1.5})
    with pytest.raises(ExprError, match="unknown parameter"):
        template("x{$index}", {})
