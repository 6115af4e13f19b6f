"""The expression language of parameter values: ``$planes * 4``, ``($k - 1) // 2``,
``make_divisible($c * $width, 8)``, ``$s if $index == 0 else 1``.

Text is parsed with Python's own parser (:func:`ast.parse`, which only builds a tree)
and the tree is interpreted here, node by node, from a short list of allowed forms:
numbers, booleans, strings, lists, arithmetic, comparisons, ``and``/``or``/``not``,
conditionals, indexing and a fixed table of functions. Nothing is ever given to
``eval``; the text is bounded (:data:`MAX_EXPRESSION`) and so is every number made.

An expression may be bound in steps: :func:`bind` with the names known so far gives
either the value or, while some names are still unknown (``$index`` of a ``repeat``
not yet unrolled), the expression with the known ones written in as literals.
"""

from __future__ import annotations

import ast
import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .limits import MAX_INT, MAX_ROUND_DIGITS

__all__ = [
    "FUNCTIONS",
    "INDEX",
    "MAX_EXPRESSION",
    "Expr",
    "ExprError",
    "bind",
    "is_expression",
    "names",
    "parse",
    "template",
]

MAX_EXPRESSION = 256
"""Longest expression text accepted."""
INDEX = "index"
"""The reserved name of a copy's number inside ``repeat`` and ``for``."""

_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_EXACT = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_MANGLE = "__p_"
_TEMPLATE = re.compile(r"\{([^{}]*)\}")


class ExprError(Exception):
    """An expression that cannot be read or computed; ``column`` counts from 1 in its text."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, at least
    ``min_value``, never more than 10% below ``v``."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ExprError(f"make_divisible: divisor must be a whole number >= 1, got {divisor!r}")
    low = divisor if min_value is None else min_value
    new = max(low, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExprError(f"{name} needs numbers, got {v!r}")
    return v


def _length(v: Any) -> int:
    if not isinstance(v, (list, str)):
        raise ExprError(f"len needs a list, got {v!r}")
    return len(v)


def _round(v: Any, n: Any = None) -> float:
    x = _number("round", v)
    if n is None:
        return round(x)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ExprError(f"round: the number of digits must be a whole number, got {n!r}")
    if abs(n) > MAX_ROUND_DIGITS:
        raise ExprError(
            f"round: {n} digits is out of range (at most {MAX_ROUND_DIGITS} either side of "
            "the point; a fixed limit, specnet._front.limits.MAX_ROUND_DIGITS)"
        )
    return round(x, n)


def _int(v: Any) -> int:
    x = _number("int", v)
    if not math.isfinite(x):
        raise ExprError(f"int of {x!r}")
    return int(x)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": lambda *xs: min(_number("min", x) for x in xs),
    "max": lambda *xs: max(_number("max", x) for x in xs),
    "round": _round,
    "int": _int,
    "float": lambda x: float(_number("float", x)),
    "abs": lambda x: abs(_number("abs", x)),
    "ceil": lambda x: math.ceil(_number("ceil", x)),
    "floor": lambda x: math.floor(_number("floor", x)),
    "len": _length,
    "make_divisible": _make_divisible,
}
"""The functions an expression may call."""

_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "True": True, "False": False}

_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Expr:
    """A parsed expression."""

    text: str
    tree: ast.expr
    names: frozenset[str]
    """The parameters it uses (without ``$``)."""


def is_expression(value: Any) -> bool:
    """Whether a spec value is an expression (a string that uses a ``$name``)."""
    return isinstance(value, str) and "$" in value and _REF.search(value) is not None


def names(value: str) -> set[str]:
    """The ``$names`` a string uses (also for text that does not parse)."""
    return set(_REF.findall(value))


def parse(text: str) -> Expr:
    if len(text) > MAX_EXPRESSION:
        raise ExprError(
            f"expression longer than {MAX_EXPRESSION} characters (a fixed limit, "
            "specnet._front.expr.MAX_EXPRESSION)"
        )
    if _MANGLE in text:
        raise ExprError(f"'{_MANGLE}' cannot appear in an expression")
    source = _REF.sub(lambda m: _MANGLE + m.group(1), text)
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        column = getattr(exc, "offset", None)
        raise ExprError("cannot read this expression", column) from None
    used = {
        n.id[len(_MANGLE) :]
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id.startswith(_MANGLE)
    }
    if used != names(text):  # "$a$b": names run together
        raise ExprError("cannot read this expression")
    return Expr(text, tree, frozenset(used))


def bind(value: str, env: Mapping[str, Any]) -> Any:
    """``value`` with the names in ``env`` bound: the result if nothing is left unknown,
    else the text of the expression with the known names written as literals."""
    exact = _EXACT.fullmatch(value)
    if exact:
        name = exact.group(1)
        return copy.deepcopy(env[name]) if name in env else value
    expr = parse(value)
    if expr.names <= set(env):
        return _Eval(env).value(expr.tree)
    if not expr.names & set(env):
        return value
    return _partial(expr, env)


def template(key: str, env: Mapping[str, Any]) -> str:
    """A name with ``{expression}`` parts (``denselayer{$index + 1}``), filled in."""

    def part(m: re.Match[str]) -> str:
        v = bind(m.group(1).strip(), env)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ExprError(f"a name's {{...}} part must give a whole number or a word, got {v!r}")
        if isinstance(v, str) and is_expression(v):
            missing = ", ".join(f"${n}" for n in sorted(names(v) - set(env)))
            raise ExprError(f"unknown parameter {missing} in the name")
        return str(v)

    return _TEMPLATE.sub(part, key)


def _partial(expr: Expr, env: Mapping[str, Any]) -> str:
    class Known(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.expr:
            name = node.id[len(_MANGLE) :] if node.id.startswith(_MANGLE) else None
            if name is not None and name in env:
                return (
                    ast.Constant(env[name])
                    if not isinstance(env[name], list)
                    else _literal(env[name])
                )
            return node

    tree = Known().visit(copy.deepcopy(expr.tree))
    return ast.unparse(tree).replace(_MANGLE, "$")


def _literal(value: Any) -> ast.expr:
    if isinstance(value, list):
        return ast.List([_literal(v) for v in value], ast.Load())
    return ast.Constant(value)


class _Eval:
    def __init__(self, env: Mapping[str, Any]) -> None:
        self.env = env

    def value(self, node: ast.expr) -> Any:
        out = self._value(node)
        if isinstance(out, float) and not math.isfinite(out):
            raise ExprError(f"the result is {out!r}")
        if isinstance(out, int) and not isinstance(out, bool) and abs(out) > MAX_INT:
            raise ExprError(f"a number larger than {MAX_INT} (torch's sizes are 64-bit)")
        return out

    def _value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, (int, float, str, bool)):
                return node.value
            raise ExprError(f"{node.value!r} is not a value an expression may hold")
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp):
            v = self.value(node.operand)
            if isinstance(node.op, ast.Not):
                return not v
            x = _number("unary " + ("-" if isinstance(node.op, ast.USub) else "+"), v)
            if isinstance(node.op, ast.USub):
                return -x
            if isinstance(node.op, ast.UAdd):
                return x
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            symbol = _SYMBOLS[type(node.op)]
            a = _number(f"'{symbol}'", self.value(node.left))
            b = _number(f"'{symbol}'", self.value(node.right))
            if b == 0 and symbol in ("/", "//", "%"):
                raise ExprError(f"division by zero in '{ast.unparse(node).replace(_MANGLE, '$')}'")
            return self.value_of(_ARITHMETIC[type(node.op)], a, b)
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for item in node.values:
                result = self.value(item)
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = self.value(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self.value(right_node)
                check = _COMPARE.get(type(op))
                if check is None:
                    break
                try:
                    if not check(left, right):
                        return False
                except TypeError:
                    raise ExprError(f"cannot compare {left!r} with {right!r}") from None
                left = right
            else:
                return True
        if isinstance(node, ast.IfExp):
            return self.value(node.body) if self.value(node.test) else self.value(node.orelse)
        if isinstance(node, ast.Subscript):
            seq = self.value(node.value)
            i = self.value(node.slice)
            if isinstance(seq, dict) and isinstance(i, str):
                if i not in seq:
                    raise ExprError(f"no key {i!r} in {sorted(seq)}")
                return copy.deepcopy(seq[i])
            if not isinstance(seq, list) or isinstance(i, bool) or not isinstance(i, int):
                raise ExprError(f"indexing needs a list and a whole number, got {seq!r}[{i!r}]")
            if not -len(seq) <= i < len(seq):
                raise ExprError(f"index {i} is outside a list of {len(seq)}")
            return copy.deepcopy(seq[i])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = FUNCTIONS.get(node.func.id)
            if fn is None:
                raise ExprError(
                    f"unknown function '{node.func.id}'; an expression may call "
                    + ", ".join(FUNCTIONS)
                )
            args = [self.value(a) for a in node.args if not isinstance(a, ast.Starred)]
            kwargs = {k.arg: self.value(k.value) for k in node.keywords if k.arg is not None}
            try:
                return fn(*args, **kwargs)
            except ExprError:
                raise
            except (TypeError, ValueError, OverflowError):
                raise ExprError(f"{node.func.id}() cannot take these arguments") from None
        raise ExprError(
            f"'{ast.unparse(node).replace(_MANGLE, '$')}' is not allowed in an expression"
        )

    @staticmethod
    def value_of(op: Callable[[Any, Any], Any], a: float, b: float) -> Any:
        try:
            return op(a, b)
        except (OverflowError, ArithmeticError):
            raise ExprError("a number too large to compute") from None

    def _name(self, node: ast.Name) -> Any:
        if node.id.startswith(_MANGLE):
            name = node.id[len(_MANGLE) :]
            if name not in self.env:
                raise ExprError(f"unknown parameter '${name}'")
            return copy.deepcopy(self.env[name])
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise ExprError(f"'{node.id}' is a function: call it, {node.id}(...)")
        raise ExprError(f"unknown name '{node.id}' (a parameter is written ${node.id})")
