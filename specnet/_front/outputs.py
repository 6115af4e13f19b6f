"""The check every command makes of a file it is told to write, before any work."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

__all__ = ["check_writable"]


def check_writable(path: str | os.PathLike[str], option: str, what: str = "file") -> None:
    """Refuse an output ``path`` (given as ``option``, e.g. ``-o``) that names a folder or
    lies in a folder that does not exist: a :class:`UsageError` naming the option."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; name the {what} to write")
    if not p.parent.is_dir():
        raise UsageError(f"{option} {p}: the folder {p.parent} does not exist")
