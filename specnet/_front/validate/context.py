"""What every stage of validation shares: where the walk is, and how values are shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..limits import MAX_NAME

__all__ = [
    "LAYER_NAME",
    "NODE_KEYS",
    "PARAM_REF",
    "SPEC_NAME",
    "Ctx",
    "TooLarge",
    "placeholder",
    "show",
]

PARAM_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
"""A block parameter used in a block's body: ``$name``."""
LAYER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
"""Names of a container's children (and of graph inputs)."""
SPEC_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")
"""A spec's ``name:``: safe as a file or folder name, and in code once '-' and '.' are
replaced (no '/', no spaces, no '..' alone, bounded)."""
PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""A block parameter's name (a leading '_' is refused: Python keeps those private)."""
NODE_KEYS = ("type", "repeat", "input")
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


@dataclass(frozen=True)
class Ctx:
    """Where the walk is: inside which blocks, and whether ``$params`` are placeholders."""

    placeholders: frozenset[str] = frozenset()
    blocks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    in_graph: bool = False


class TooLarge(Exception):
    """The expanded model passed :data:`~specnet._front.limits.MAX_LAYERS` (reported already)."""


def placeholder(value: Any, ctx: Ctx) -> bool:
    if not isinstance(value, str) or not ctx.placeholders:
        return False
    m = PARAM_REF.fullmatch(value)
    return m is not None and m.group(1) in ctx.placeholders
