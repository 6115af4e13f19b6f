"""A whole check of a read document: validation, then each variant's shapes.

One function for every caller that reports a spec's errors (``specnet validate``,
``specnet.validate``, the language server), so that they report the same errors.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

from .errors import ErrorItem, SpecError, SpecValidationError
from .overrides import Override, apply_overrides
from .source import Document
from .spec import Spec
from .validate import validate_document
from .validate.blocks import PARAM_TYPES

__all__ = ["check_document", "choose_variant"]


def choose_variant(doc: Document, variant: str) -> Document:
    """A copy of ``doc`` with ``variant`` chosen."""
    chosen = Document(copy.deepcopy(doc.data), doc.source, list(doc.errors))
    apply_overrides(chosen.data, [Override(("variant",), variant, f"variant={variant}")])
    return chosen


def check_document(doc: Document, each: Callable[[Spec], None]) -> Spec:
    """Validate ``doc`` and call ``each`` (shape inference, or a build) on its spec; returns it.

    A spec with ``variants:`` and none chosen (by its ``variant:`` key) is checked in every
    variant, and with the defaults too where every parameter has one (what a build without a
    variant builds); an error common to several is reported once, with a note naming those
    it is found in. Returns the first spec checked. Raises :class:`SpecError` with every error.
    """
    data = doc.data if isinstance(doc.data, dict) else {}
    variants = data.get("variants")
    if data.get("variant") is not None or not isinstance(variants, dict) or not variants:
        spec = validate_document(doc)
        each(spec)
        return spec
    params = data.get("params")
    defaults = isinstance(params, dict) and not any(
        isinstance(v, str) and v in PARAM_TYPES for v in params.values()
    )
    found: dict[tuple[object, str], tuple[ErrorItem, list[str]]] = {}
    checked: list[Spec] = []
    names: list[str | None] = ([None] if defaults else []) + [str(v) for v in variants]
    for name in names:
        try:
            one = validate_document(doc if name is None else choose_variant(doc, name))
            each(one)
            checked.append(one)
        except SpecError as exc:
            for e in exc.errors:
                found.setdefault((e.path, e.msg), (e, []))[1].append(
                    "the defaults (no variant)" if name is None else f"variant '{name}'"
                )
    if found:
        raise SpecValidationError(
            [
                dataclasses.replace(e, notes=(*e.notes, "in " + ", ".join(where)))
                if len(where) < len(names)
                else e  # the same in every one
                for e, where in found.values()
            ]
        )
    return checked[0]
