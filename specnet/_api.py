"""The Python entry points: load and validate specs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from specnet._front.check import check_document, choose_variant
from specnet._front.extras import require_torch
from specnet._front.source import Document, read_document
from specnet._front.spec import Spec
from specnet._front.validate import validate_document

__all__ = ["SpecSource", "build", "load", "summary", "validate"]

if TYPE_CHECKING:
    import torch
    from torch import nn

    from specnet._build.summary import Summary

SpecSource = str | os.PathLike[str] | Mapping[str, Any] | Spec


def load(source: SpecSource, *, variant: str | None = None) -> Spec:
    """Read and validate a spec from a file path, YAML/JSON text or a mapping.

    ``variant`` chooses one of the spec's ``variants:`` (as its ``variant:`` key would).
    Raises :class:`SpecError` listing every problem, each with its file, line,
    column and field path.
    """
    if isinstance(source, Spec) and (variant is None or variant == source.variant):
        return source
    return validate_document(_document(source, variant))


def _document(source: SpecSource, variant: str | None) -> Document:
    if isinstance(source, Spec):  # read again, with its positions
        doc = Document(source.data, source.source)
    else:
        doc = read_document(source)
    return doc if variant is None else choose_variant(doc, variant)


def check(source: SpecSource, *, build: bool = False, variant: str | None = None) -> Spec:
    """Load a spec and run shape inference (without torch): every error a build would find.

    ``build=True`` also builds the model on the meta device (it imports torch, allocates
    nothing), so that what the installed torch refuses is reported at the spec line too.
    A spec with ``variants:`` and none chosen (by ``variant`` or its ``variant:`` key) is
    checked in every variant; the errors of each say which.
    """
    return check_document(_document(source, variant), lambda spec: _check_one(spec, build))


def _check_one(spec: Spec, build: bool) -> None:
    from specnet._front.infer import infer

    if build:
        require_torch("a check with build=True")
        from specnet._build.compiler import build_module

        build_module(spec, "meta")
    else:
        infer(spec)


def validate(source: SpecSource, *, build: bool = False, variant: str | None = None) -> list[str]:
    """Check a spec, shapes included; returns the error lines (empty when it is valid).

    ``build=True`` also builds it on the meta device with the installed torch; a spec with
    variants is checked in each, unless ``variant`` picks one.
    """
    from specnet._front.errors import SpecError

    try:
        check(source, build=build, variant=variant)
    except SpecError as exc:
        return [str(e) for e in exc.errors]
    return []


def build(
    source: SpecSource,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    variant: str | None = None,
) -> nn.Module:
    """Validate, shape-check and build a spec's model (``variant``: one of its ``variants:``).

    ``device="meta"`` builds without allocating or initialising weights (e.g. to
    load a checkpoint into a large model); ``dtype`` (``torch.bfloat16`` or
    ``"bfloat16"``) converts floating-point parameters. Shape mismatches raise
    :class:`SpecShapeError` pointing at the spec line.
    """
    require_torch("specnet.build")
    import torch

    from specnet._build.compiler import build_module

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return build_module(load(source, variant=variant), device, dtype)  # type: ignore[arg-type]


def summary(source: SpecSource, *, variant: str | None = None) -> Summary:
    """Per-layer output shapes, parameters and multiply-accumulates of a spec's model.

    Computed from the spec (shape inference and a build on the meta device),
    without a forward pass on real data; ``str()`` renders a table.
    """
    require_torch("specnet.summary")
    from specnet._build.summary import summarize

    return summarize(load(source, variant=variant))
