"""``--set key=value``: change a spec's data before it is validated.

Keys are dotted paths into the document, list items by index: ``train.epochs``,
``train.optimizer.lr``, ``model.layers[2].out_features`` (or ``model.layers.2.out_features``).
Values are YAML, read as spec files are (the YAML 1.2 core schema): ``3`` is an int, ``1e-3``
a float, ``no`` a string, ``[1, 8, 8]`` a list. Missing mappings on the way are created, and a
component named by a bare string (``loss: CrossEntropyLoss``) becomes ``{type: ...}`` when one
of its arguments is set.

The result is validated like the file itself, so a bad key or value is reported with the
file's location of the nearest enclosing key and a note naming the ``--set`` that caused it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Path, SpecError, UsageError, format_path
from .source import Document, _parse_text, read_document

__all__ = ["Override", "OverrideError", "apply_overrides", "load_with_overrides", "parse_override"]

_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


class OverrideError(UsageError, ValueError):
    """A ``--set`` argument that cannot be applied (a usage error, not a spec error)."""


@dataclass(frozen=True)
class Override:
    """One ``--set``: where, what, and the argument as typed."""

    path: Path
    value: Any
    text: str


def _parse_path(key: str, text: str) -> Path:
    parts: list[str | int] = []
    pos = 0
    while pos < len(key):
        if key[pos] == "." and parts:
            pos += 1
        m = _PART.match(key, pos)
        if m is None:
            raise OverrideError(f"--set {text!r}: cannot read the key {key!r}")
        name, index = m.groups()
        if index is not None:
            parts.append(int(index))
        elif name.lstrip("-").isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
        pos = m.end()
    if not parts or not isinstance(parts[0], str):
        raise OverrideError(f"--set {text!r}: the key must start with a name, e.g. train.epochs")
    return tuple(parts)


def parse_override(text: str) -> Override:
    """``"train.optimizer.lr=0.1"`` -> ``Override(("train", "optimizer", "lr"), 0.1, ...)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    try:
        value = _parse_text(raw, None).data if raw.strip() else ""
    except SpecError as exc:
        raise OverrideError(f"--set {text!r}: the value is not YAML: {exc.errors[0].msg}") from None
    return Override(_parse_path(key, text), value, text)


def apply_overrides(data: Any, overrides: Sequence[Override]) -> None:
    """Apply ``overrides`` to a spec's data (a mapping), in order, in place."""
    for o in overrides:
        if not isinstance(data, dict):
            raise OverrideError(f"--set {o.text!r}: the spec is not a mapping")
        node: Any = data
        for i, part in enumerate(o.path[:-1]):
            nxt = o.path[i + 1]
            where = format_path(o.path[: i + 1])
            if isinstance(node, dict) and isinstance(part, str):
                child = node.get(part)
                if child is None:
                    child = node[part] = [] if isinstance(nxt, int) else {}
                elif isinstance(child, str) and isinstance(nxt, str):
                    child = node[part] = {"type": child}  # `loss: MSELoss` -> {type: MSELoss}
                node = child
            elif isinstance(node, list) and isinstance(part, int):
                if not -len(node) <= part < len(node):
                    raise OverrideError(
                        f"--set {o.text!r}: {where} is out of range ({len(node)} items)"
                    )
                node = node[part]
            else:
                raise OverrideError(f"--set {o.text!r}: {where} cannot be indexed by {part!r}")
            if not isinstance(node, (dict, list)):
                raise OverrideError(
                    f"--set {o.text!r}: {format_path(o.path[: i + 1])} is {node!r}, not a mapping or list"
                )
        last = o.path[-1]
        settable = (isinstance(node, dict) and isinstance(last, str)) or (
            isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node)
        )
        if not settable:
            raise OverrideError(f"--set {o.text!r}: cannot set {format_path(o.path)}")
        node[last] = o.value


def _related(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def load_with_overrides(
    source: str | os.PathLike[str], overrides: Sequence[Override | str] = ()
) -> Any:
    """Read a spec file, apply ``overrides``, validate; a :class:`specnet.Spec`.

    Errors about overridden values carry a note ``set by --set KEY=VALUE``.
    """
    from .validate import validate_document

    parsed = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
    doc: Document = read_document(source)
    apply_overrides(doc.data, parsed)
    try:
        return validate_document(doc)
    except SpecError as exc:
        items = []
        for e in exc.errors:
            notes = tuple(f"set by --set {o.text}" for o in parsed if _related(o.path, e.path))
            items.append(dataclasses.replace(e, notes=e.notes + notes) if notes else e)
        raise type(exc)(items) from None
