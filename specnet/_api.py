"""The Python entry points: load and validate specs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from specnet._front.source import read_document
from specnet._front.spec import Spec
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
    return validate_document(read_document(source))


def check(source: SpecSource, *, build: bool = False) -> Spec:
    """Load a spec and run shape inference (without torch): every error a build would find.

    ``build=True`` also builds the model on the meta device (it imports torch, allocates
    nothing), so that what the installed torch refuses is reported at the spec line too.
    """
    from specnet._front.infer import infer

    spec = load(source)
    if build:
        from specnet._build.compiler import build_module

        build_module(spec, "meta")
    else:
        infer(spec)
    return spec


def validate(source: SpecSource, *, build: bool = False) -> list[str]:
    """Check a spec, shapes included; returns the error lines (empty when it is valid).

    ``build=True`` also builds it on the meta device with the installed torch.
    """
    from specnet._front.errors import SpecError

    try:
        check(source, build=build)
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
