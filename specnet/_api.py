"""The Python entry points: load and validate specs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._source import read_document
from ._spec import Spec
from ._trainspec import check_train
from ._validate import validate_document

__all__ = ["SpecSource", "load", "validate"]

SpecSource = str | os.PathLike[str] | Mapping[str, Any] | Spec


def load(source: SpecSource) -> Spec:
    """Read and validate a spec from a file path, YAML/JSON text or a mapping.

    Raises :class:`SpecError` listing every problem, each with its file, line,
    column and field path.
    """
    if isinstance(source, Spec):
        return source
    return validate_document(read_document(source), check_train)


def validate(source: SpecSource) -> list[str]:
    """Check a spec; returns the error lines (empty when it is valid)."""
    from ._errors import SpecError

    try:
        load(source)
    except SpecError as exc:
        return [str(e) for e in exc.errors]
    return []
