"""A data set's prepared tensors kept on disk, so that the next run skips preparing them.

Digits' splits come from scikit-learn (``load_digits`` and a stratified ``train_test_split``),
whose import alone takes a second or two; the tensors they give are a few hundred kilobytes. The
first run writes them to ``$SPECNET_CACHE/data`` (``$XDG_CACHE_HOME/specnet/data`` by default, that is
``~/.cache/specnet/data``), one safetensors file per key (the library's version and the split
settings); later runs read them back without importing the library.

A cached file is trusted only when it is whole: its metadata names the key it was made for and
the SHA-256 of its tensors, both checked on every read. A missing, damaged, foreign or stale
file, or a folder that cannot be written, is never an error: the tensors are prepared again
(and written when they can be). Files are written atomically (:mod:`~specnet._train.files`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from .files import atomic_write_bytes

__all__ = ["cache_folder", "cached_tensors"]

ENV = "SPECNET_CACHE"
_KEY, _DIGEST = "specnet.key", "specnet.sha256"


def cache_folder() -> Path:
    """Where prepared tensors are kept: ``data/`` in specnet's cache, ``$SPECNET_CACHE``
    (``$XDG_CACHE_HOME/specnet``, that is ``~/.cache/specnet``, by default; the development
    environment of ``scripts/env.sh`` is there too)."""
    given = os.environ.get(ENV)
    if given:
        return Path(given).expanduser() / "data"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specnet" / "data"


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = path.read_bytes()
        # safetensors' reader refuses a damaged header or a truncated file; the metadata is
        # read from the same bytes.
        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        meta = header.get("__metadata__") or {}
    except (OSError, ValueError, SafetensorError, RuntimeError):
        return None
    if meta.get(_KEY) != key or meta.get(_DIGEST) != _digest(tensors):
        return None
    return tensors


def cached_tensors(
    name: str, key: Mapping[str, object], prepare: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """The tensors ``prepare()`` gives for ``key``: read from the cache when a whole file for
    that key is there, else prepared and written for the next run."""
    text = json.dumps({"name": name, **key}, sort_keys=True)
    path = cache_folder() / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"
    found = _read(path, text)
    if found is not None:
        return found
    tensors = {k: v.contiguous() for k, v in prepare().items()}
    from safetensors.torch import save

    blob = save(tensors, metadata={_KEY: text, _DIGEST: _digest(tensors)})
    with contextlib.suppress(OSError):  # a read-only or full disk: not cached this time
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, blob)
    return tensors
