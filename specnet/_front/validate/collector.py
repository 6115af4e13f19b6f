"""Collecting errors: every problem found, located in the file, each reported once."""

from __future__ import annotations

from ..errors import ErrorItem, Path, format_path
from ..source import Document
from .context import Ctx

__all__ = ["Collector"]


class Collector:
    """The errors of one document. Values passed into a block are reported where they were
    written (the use), not where the block's body uses them (``redirect``)."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.src = doc.source
        self.errors: list[ErrorItem] = list(doc.errors)
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
            return
        self._seen.add((path, msg))
        self.errors.append(self.src.error(path, msg, kind=kind, key=key, notes=notes))

    def where(self, path: Path) -> str:
        pos = self.src.position(path)
        name = self.src.file or "<spec>"
        return f"{name}:{pos[0]}:{pos[1]}" if pos else name
