"""What an import could not express, each with the module path and the line of Python."""

from __future__ import annotations

import functools
import importlib.util
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from specnet._front.errors import SpecnetError

__all__ = ["ModelError", "Problem", "Refused", "SpecImportError", "qualname", "user_line"]


@dataclass(frozen=True)
class Problem:
    """One thing the spec format cannot say about the module."""

    path: str
    """The submodule's path (``layer1.0``); ``""`` is the module imported."""
    cls: str
    """The submodule's class (``torchvision.models.resnet.BasicBlock``)."""
    message: str
    where: str | None = None
    """``file.py:123: the line of code``, where the call is."""

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{where}{self.path or '<module>'} ({self.cls}): {self.message}"


def qualname(cls: type) -> str:
    """``torchvision.models.resnet.BasicBlock``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Refused(Exception):
    """A call with no spec equivalent (raised by a converter, turned into a :class:`Problem`)."""


class SpecImportError(SpecnetError):
    """The module holds what a spec cannot express; :attr:`problems` lists all of it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        """Each problem once: those of every instance of a class (same message, same line)
        are one line, with how many more there are."""
        seen: dict[tuple[str, str, str | None], list[Problem]] = {}
        for p in self.problems:
            seen.setdefault((p.cls, p.message, p.where), []).append(p)
        lines = []
        for group in seen.values():
            more = f" (and {len(group) - 1} more like it)" if len(group) > 1 else ""
            lines.append(f"  {group[0]}{more}")
        return f"the module cannot be written as a spec ({len(seen)} problems):\n" + "\n".join(
            lines
        )


class ModelError(SpecnetError):
    """The module itself failed on the example input (a shape it does not take, a batch
    size it cannot run): the user's model, not the import."""


@functools.cache
def _torch_dir() -> str:
    spec = importlib.util.find_spec("torch")
    origin = spec.origin if spec is not None else None
    return str(Path(origin).parent) + os.sep if origin else "\0"


def user_line(stack: str | traceback.StackSummary | None) -> str | None:
    """The innermost frame outside torch: ``file.py:123: code``.

    ``stack`` is an fx node's ``stack_trace`` text or a traceback's frames.
    """
    if stack is None:
        return None
    frames: list[tuple[str, int | None, str]]
    if isinstance(stack, str):
        frames = []
        lines = stack.strip().splitlines()
        for i, line in enumerate(lines):
            line = line.strip()
            if line.startswith('File "'):
                file, _, rest = line[len('File "') :].partition('", line ')
                digits = rest.split(",")[0]
                after = lines[i + 1].strip() if i + 1 < len(lines) else ""
                code = "" if after.startswith('File "') else after
                frames.append((file, int(digits) if digits.isdigit() else None, code))
    else:
        frames = [(f.filename, f.lineno, (f.line or "").strip()) for f in stack]
    for file, number, code in reversed(frames):
        if not file.startswith(_torch_dir()) and "/specnet/_import/" not in file.replace("\\", "/"):
            return f"{_short(file)}:{number}: {code}" if code else f"{_short(file)}:{number}"
    return None


def _short(file: str) -> str:
    """A path from the package directory on (``torchvision/models/resnet.py``)."""
    parts = Path(file).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    return file
