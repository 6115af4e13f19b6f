"""What every stage of validation shares: where the walk is, and how values are shown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..expr import is_expression, names
from ..limits import MAX_NAME

__all__ = [
    "LAYER_NAME",
    "NODE_KEYS",
    "PARAM_REF",
    "SPEC_NAME",
    "TEMPLATE_NAME",
    "Ctx",
    "TooLarge",
    "placeholder",
    "show",
]

PARAM_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
"""A block parameter used in a block's body: ``$name``."""
LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
"""Names of a container's children (and of graph inputs): as torch allows them, without
'.' (torchvision's RegNet has ``block1-0``)."""
TEMPLATE_NAME = re.compile(r"(?:[A-Za-z0-9_-]|\{[^{}]*\})+")
"""A child's name with ``{expression}`` parts, filled in per copy: ``denselayer{$index + 1}``."""
SPEC_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")
"""A spec's ``name:``: safe as a file or folder name, and in code once '-' and '.' are
replaced (no '/', no spaces, no '..' alone, bounded)."""
PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""A block parameter's name (a leading '_' is refused: Python keeps those private)."""
NODE_KEYS = ("type", "repeat", "input", "for", "if", "splice", "call")
"""Keys of a node that are not arguments of its type."""


def show(value: Any) -> str:
    """A value as the user wrote it (YAML-ish)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def spec_text(value: Any) -> str:
    """An argument in full as a spec writes it: ``3``, ``[3, 3]``, ``true``, ``null`` (for
    hints, hovers and drawings; :func:`show` is the short form error messages quote)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(spec_text(x) for x in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Ctx:
    """Where the walk is: inside which blocks, and whether ``$params`` are placeholders."""

    placeholders: frozenset[str] = frozenset()
    blocks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    in_graph: bool = False
    env: Mapping[str, Any] = field(default_factory=dict)
    """The parameters' values here (the model's, the block's, ``$index``), for the
    ``{...}`` parts of names; values were substituted already."""


class TooLarge(Exception):
    """The expanded model passed :data:`~specnet._front.limits.MAX_LAYERS` (reported already)."""


def placeholder(value: Any, ctx: Ctx) -> bool:
    """Whether ``value`` depends on a parameter whose value is not known here (a block's
    body checked as written)."""
    if not ctx.placeholders:
        return False
    if isinstance(value, list):  # a shape [$nf, -1]: unknown as a whole
        return any(placeholder(v, ctx) for v in value)
    if not isinstance(value, str):
        return False
    m = PARAM_REF.fullmatch(value)
    if m is not None:
        return m.group(1) in ctx.placeholders
    return is_expression(value) and bool(names(value) & ctx.placeholders)
