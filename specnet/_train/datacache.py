"""A data set's prepared arrays kept on disk, so that the next run skips preparing them.

Digits' splits come from scikit-learn (``load_digits`` and a stratified ``train_test_split``),
whose import alone takes a second or two; the arrays they give are a few hundred kilobytes. The
first run writes them to ``$SPECNET_CACHE/data`` (``$XDG_CACHE_HOME/specnet/data`` by default, that is
``~/.cache/specnet/data``), one safetensors file per key (the library's version and the split
settings); later runs read them back without importing the library.

A cached file is trusted only when it is whole: its metadata names the key it was made for and
the SHA-256 of its arrays, both checked on every read. A missing, damaged, foreign or stale
file, or a folder that cannot be written, is never an error: the arrays are prepared again
(and written when they can be). Files are written atomically (:mod:`~specnet._train.files`).

A file's first preparation may run in a helper process (:func:`prepare_elsewhere`) while the
run imports torch, on another core: this module and the preparation need NumPy, not torch. A
run that then needs the file waits for that process, and prepares the arrays itself if the
process failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .files import atomic_write_bytes

__all__ = ["cache_file", "cache_folder", "cached_arrays", "prepare_elsewhere", "write_arrays"]

ENV = "SPECNET_CACHE"
_KEY, _DIGEST = "specnet.key", "specnet.sha256"
HELPER_SECONDS = 120.0
"""How long a run waits for a helper process preparing its file before preparing it itself."""

Arrays = dict[str, NDArray[np.generic]]
_helpers: dict[Path, subprocess.Popen[bytes]] = {}
"""The helper processes started in this process, by the file each writes."""


def cache_folder() -> Path:
    """Where prepared arrays are kept: ``data/`` in specnet's cache, ``$SPECNET_CACHE``
    (``$XDG_CACHE_HOME/specnet``, that is ``~/.cache/specnet``, by default; the development
    environment of ``scripts/env.sh`` is there too)."""
    given = os.environ.get(ENV)
    if given:
        return Path(given).expanduser() / "data"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specnet" / "data"


FORMAT = 2
"""The files' format, part of every key: 2 digests NumPy's dtypes (1, torch's), so that
releases of either format sharing a cache folder keep their own files."""


def cache_file(name: str, key: Mapping[str, object]) -> tuple[Path, str]:
    """The file that holds ``name``'s arrays for ``key``, and the key as its metadata says it."""
    text = json.dumps({"name": name, "format": FORMAT, **key}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return cache_folder() / f"{name}-{digest}.safetensors", text


def _digest(arrays: Mapping[str, NDArray[np.generic]]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read(path: Path, key: str) -> Arrays | None:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        data = path.read_bytes()
        # safetensors' reader refuses a damaged header or a truncated file; the metadata is
        # read from the same bytes.
        arrays = {k: np.require(a, requirements="W") for k, a in load(data).items()}
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        meta = header.get("__metadata__") or {}
    except (OSError, ValueError, SafetensorError, RuntimeError):
        return None
    if meta.get(_KEY) != key or meta.get(_DIGEST) != _digest(arrays):
        return None
    return arrays


def write_arrays(path: Path, key: str, arrays: Mapping[str, NDArray[np.generic]]) -> None:
    """Write ``arrays`` as the cache file ``path`` for ``key`` (its metadata says it, and the
    arrays' digest); a read-only or full disk leaves it unwritten."""
    from safetensors.numpy import save

    blob = save(dict(arrays), metadata={_KEY: key, _DIGEST: _digest(arrays)})
    with contextlib.suppress(OSError):  # not cached this time
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, blob)


def _helper_done(path: Path, timeout: float = HELPER_SECONDS) -> bool:
    """Wait for the helper process writing ``path``, if one was started (at most ``timeout``
    seconds; then it is stopped): whether it succeeded."""
    process = _helpers.pop(path, None)
    if process is None:
        return False
    try:
        return process.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def cached_arrays(
    name: str, key: Mapping[str, object], prepare: Callable[[], Mapping[str, NDArray[np.generic]]]
) -> Arrays:
    """The arrays ``prepare()`` gives for ``key``: read from the cache when a whole file for
    that key is there (or once the helper process preparing it is done), else prepared and
    written for the next run."""
    path, text = cache_file(name, key)
    found = _read(path, text)
    if found is None and _helper_done(path):
        found = _read(path, text)
    elif path in _helpers:  # the file is whole: its helper has written it and is exiting
        _helper_done(path, timeout=5)
    if found is not None:
        return found
    arrays = {k: np.ascontiguousarray(v) for k, v in prepare().items()}
    write_arrays(path, text, arrays)
    return arrays


def prepare_elsewhere(name: str, key: Mapping[str, object], argv: Sequence[str]) -> None:
    """Start ``python -P -m *argv``, which writes the cache file of ``name`` for ``key``, unless
    that file is whole already, a process writing it was started, or its folder cannot be
    written; :func:`cached_arrays` waits for it. A process that cannot start is left out: the
    run prepares the arrays."""
    path, text = cache_file(name, key)
    if path in _helpers or _read(path, text) is not None:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):  # it could not write the file: the run prepares
        return
    with contextlib.suppress(OSError):
        _helpers[path] = subprocess.Popen(
            [sys.executable, "-P", "-m", *argv],  # -P: not the working directory's modules
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
