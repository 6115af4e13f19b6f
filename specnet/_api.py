"""The Python entry points: load and validate specs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from specnet._front.source import read_document
from specnet._front.spec import Spec
from specnet._front.trainspec import check_train
from specnet._front.validate import validate_document

__all__ = ["SpecSource", "build", "load", "summary", "validate"]

if TYPE_CHECKING:
    import torch
    from torch import nn

    from specnet._build.summary import Summary

SpecSource = str | os.PathLike[str] | Mapping[str, Any] | Spec


def load(source: SpecSource) -> Spec:
    """Read and validate a spec from a file path, YAML/JSON text or a mapping.

    Raises :class:`SpecError` listing every problem, each with its file, line,
    column and field path.
    """
    if isinstance(source, Spec):
        return source
    return validate_document(read_document(source), check_train)


def check(source: SpecSource) -> Spec:
    """Load a spec and run shape inference (without torch): every error a build would find."""
    from specnet._front.infer import infer

    spec = load(source)
    infer(spec)
    return spec


def validate(source: SpecSource) -> list[str]:
    """Check a spec, shapes included; returns the error lines (empty when it is valid)."""
    from specnet._front.errors import SpecError

    try:
        check(source)
    except SpecError as exc:
        return [str(e) for e in exc.errors]
    return []


def build(
    source: SpecSource,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> nn.Module:
    """Validate, shape-check and build a spec's model.

    ``device="meta"`` builds without allocating or initialising weights (e.g. to
    load a checkpoint into a large model); ``dtype`` (``torch.bfloat16`` or
    ``"bfloat16"``) converts floating-point parameters. Shape mismatches raise
    :class:`SpecShapeError` pointing at the spec line.
    """
    import torch

    from specnet._build.compiler import build_module

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return build_module(load(source), device, dtype)  # type: ignore[arg-type]


def summary(source: SpecSource) -> Summary:
    """Per-layer output shapes, parameters and multiply-accumulates of a spec's model.

    Computed from the spec (shape inference and a build on the meta device),
    without a forward pass on real data; ``str()`` renders a table.
    """
    from specnet._build.summary import summarize

    return summarize(load(source))
