"""The exception tree. Every error a user can cause is a :class:`SpecnetError`.

::

    Exception
    └── SpecnetError                  ``exit_code`` 1: what the ``specnet`` command exits with
        ├── SpecError (ValueError)    a spec could not be used; ``.errors`` lists every problem
        │   ├── SpecSyntaxError       the text is not YAML/JSON, or breaks a safety limit
        │   ├── SpecValidationError   the document does not follow the spec format
        │   └── SpecShapeError        tensor shapes do not fit (found while compiling)
        ├── UsageError                ``exit_code`` 2: a command asked for something impossible
        │   └── OverrideError         a ``--set`` that cannot be applied (also a ValueError)
        ├── MissingDependency         an extra's package the command needs is not installed (also
        │                             an ImportError); found before any work was done
        ├── CheckpointError           a checkpoint is missing, unreadable, or another model's
        ├── TrainingError             the settings do not fit the model, the data or the processes
        └── NonFiniteLossError        the training loss is not finite (a FloatingPointError)

    UserWarning
    └── SpecWarning                   legal but probably a mistake (a graph node no output uses)

    CheckpointError and TrainingError are ValueErrors too.

    (OverrideError is in specnet._front.overrides; the last three in specnet._train.errors.)

Each problem is an :class:`ErrorItem` that knows its file, line, column and the
path of the field inside the document, and prints as
``file:line:col: model.layers[3].kernel_size: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .limits import MAX_SUGGEST

Path = tuple[str | int, ...]


__all__ = [
    "ErrorItem",
    "MissingDependency",
    "SpecError",
    "SpecShapeError",
    "SpecSyntaxError",
    "SpecValidationError",
    "SpecWarning",
    "SpecnetError",
    "UsageError",
    "did_you_mean",
    "format_path",
]


class SpecnetError(Exception):
    """Base of every error a user can cause; anything else is a bug in specnet."""

    exit_code: ClassVar[int] = 1
    """The ``specnet`` command's exit status for this error."""


class UsageError(SpecnetError):
    """A command asked for something impossible: a missing file, options that conflict."""

    exit_code: ClassVar[int] = 2


class MissingDependency(SpecnetError, ImportError):
    """An optional package that a command needs (an extra: ``specnet[train]``,
    ``specnet[export]``) is not installed.

    Raised before the command does any work (see :mod:`specnet._front.extras`), so that a
    missing package never leaves a half-written run folder or a traceback. ``modules`` are the
    missing import names, ``install`` the pip command that brings them.

    ``exit_code`` is 1, as for :class:`~specnet._front.extras.TorchMissingError` (torch is
    missing): one exit status whichever package is missing; 2 stays for arguments that are wrong
    whatever is installed. It is an :class:`ImportError` too, so a caller's
    ``except ImportError`` fallback still applies.
    """

    def __init__(self, message: str, modules: Sequence[str] = (), install: str = "") -> None:
        super().__init__(message, name=modules[0] if modules else None)
        self.modules: tuple[str, ...] = tuple(modules)
        self.install = install

    def __reduce__(self) -> tuple[type[MissingDependency], tuple[str, tuple[str, ...], str]]:
        return (type(self), (str(self), self.modules, self.install))


def format_path(path: Path) -> str:
    """``("model", "layers", 3, "kernel_size")`` -> ``model.layers[3].kernel_size``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "<root>"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``; did you mean 'X'?`` suffix, or ``""`` when nothing is close."""
    if len(word) > MAX_SUGGEST:
        return ""  # no name that long is close to a real one; difflib is quadratic in it
    options = [c for c in choices if len(c) <= 2 * MAX_SUGGEST]
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return f"; did you mean '{by_lower[word.lower()]}'?"
    scored = sorted(
        ((difflib.SequenceMatcher(None, word.lower(), c.lower()).ratio(), c) for c in options),
        reverse=True,
    )
    # Keep the best match and those nearly as good as it.
    close = [c for r, c in scored[:3] if r >= 0.6 and r >= scored[0][0] - 0.1]
    if not close:
        return ""
    if len(close) == 1:
        return f"; did you mean '{close[0]}'?"
    return "; did you mean " + ", ".join(f"'{c}'" for c in close[:-1]) + f" or '{close[-1]}'?"


@dataclass(frozen=True)
class ErrorItem:
    """One located problem in a spec."""

    path: Path
    msg: str
    kind: str = "invalid"
    file: str | None = None
    line: int | None = None
    col: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        name = self.file or "<spec>"
        if self.line is None:
            return name
        return f"{name}:{self.line}:{self.col}"

    def __str__(self) -> str:
        text = f"{self.where}: {format_path(self.path)}: {self.msg}"
        if self.notes:
            text += " [" + "; ".join(self.notes) + "]"
        return text


class SpecError(SpecnetError, ValueError):
    """A spec could not be loaded, validated or compiled.

    ``errors`` holds every problem found, each with its location; ``str()`` prints
    one line per problem.
    """

    def __init__(self, errors: Sequence[ErrorItem]) -> None:
        self.errors: list[ErrorItem] = sorted(
            errors, key=lambda e: (e.file or "", e.line or 0, e.col or 0)
        )
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[ErrorItem]]]:
        return (type(self), (self.errors,))


class SpecSyntaxError(SpecError):
    """The text is not valid YAML/JSON, or breaks a safety limit (size, depth, aliases)."""


class SpecValidationError(SpecError):
    """The document does not follow the spec format."""


class SpecShapeError(SpecError):
    """Tensor shapes do not fit together; found while compiling, before any forward."""


class SpecWarning(UserWarning):
    """Something a spec may say but probably should not (a graph node whose value no output
    uses), issued with :func:`warnings.warn` when the spec is validated, so that every entry
    point reports it and the usual filters apply (``-W error::specnet.SpecWarning``).

    ``item`` locates it as an :class:`ErrorItem` does; ``str()`` is
    ``file:line:col: path: warning: message``.
    """

    def __init__(self, item: ErrorItem) -> None:
        self.item = item
        text = f"{item.where}: {format_path(item.path)}: warning: {item.msg}"
        if item.notes:
            text += " [" + "; ".join(item.notes) + "]"
        super().__init__(text)

    def __reduce__(self) -> tuple[type[SpecWarning], tuple[ErrorItem]]:
        return (type(self), (self.item,))
