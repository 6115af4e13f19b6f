"""Collecting errors and warnings: every problem found, located in the file, each reported
once."""

from __future__ import annotations

import sys
import warnings

from ..errors import ErrorItem, Path, SpecWarning, format_path
from ..source import Document
from .context import Ctx

__all__ = ["Collector"]


class Collector:
    """The errors (and warnings) of one document. Values passed into a block are reported
    where they were written (the use), not where the block's body uses them (``redirect``)."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.src = doc.source
        self.errors: list[ErrorItem] = list(doc.errors)
        self.warnings: list[ErrorItem] = []
        """Problems that do not stop the spec from building (:meth:`warn`)."""
        self._seen: set[tuple[Path, str]] = set()
        self.redirect: dict[Path, Path] = {}

    def error(
        self,
        path: Path,
        msg: str,
        *,
        key: bool = False,
        kind: str = "invalid",
        ctx: Ctx | None = None,
    ) -> None:
        item = self._item(path, msg, key, kind, ctx)
        if item is not None:
            self.errors.append(item)

    def warn(
        self,
        path: Path,
        msg: str,
        *,
        key: bool = False,
        kind: str = "warning",
        ctx: Ctx | None = None,
    ) -> None:
        """Record a located warning: something legal that is probably a mistake."""
        item = self._item(path, msg, key, kind, ctx)
        if item is not None:
            self.warnings.append(item)

    def emit_warnings(self) -> None:
        """Issue the warnings found, each a :class:`~specnet._front.errors.SpecWarning`."""
        level = _outside()
        for item in self.warnings:
            warnings.warn(SpecWarning(item), stacklevel=level)

    def _item(
        self, path: Path, msg: str, key: bool, kind: str, ctx: Ctx | None
    ) -> ErrorItem | None:
        """The located item, or None if it was reported already."""
        for prefix_len in range(len(path), 0, -1):
            target = self.redirect.get(path[:prefix_len])
            if target is not None:
                notes: tuple[str, ...] = (
                    f"passed into the block at {self.where(path)} ({format_path(path)})",
                )
                path, key = target + path[prefix_len:], False
                break
        else:
            notes = ctx.notes if ctx else ()
        if (path, msg) in self._seen:
            return None
        self._seen.add((path, msg))
        return self.src.error(path, msg, kind=kind, key=key, notes=notes)

    def where(self, path: Path) -> str:
        pos = self.src.position(path)
        name = self.src.file or "<spec>"
        return f"{name}:{pos[0]}:{pos[1]}" if pos else name


def _outside() -> int:
    """The ``stacklevel`` (for a warning issued by the caller) of the first frame outside
    specnet: the user's call that read the spec."""
    frame = sys._getframe(2)
    level = 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("specnet"):
        frame = frame.f_back
        level += 1
    return level
