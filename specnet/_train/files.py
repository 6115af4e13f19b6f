"""Files written so that a crash leaves the old contents or the new ones, never a torn file.

Each file is written to a temporary file in the same folder, fsync'ed, renamed over its final
name with :func:`os.replace`, and the folder is fsync'ed. New files get the permissions the
umask gives (0644 by default): a run folder is meant to be shared.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "write_failure"]


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - folders cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(target: Path) -> Path:
    # A fresh name in the same folder (so os.replace is a rename).
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Write a file so that a crash leaves either its old contents or its new ones.

    ``write`` writes the new contents to the temporary path it is given (in ``path``'s folder);
    the file is then fsync'ed, renamed over ``path`` and the folder fsync'ed. On an error the
    temporary file is removed.
    """
    target = Path(path)
    tmp = _tmp_name(target)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, str(tmp)):
            exc.filename = str(target)  # the file as the user knows it
        raise
    _fsync_dir(target.parent)


def _write_all(path: Path, data: bytes) -> None:
    # Plain system calls, so a full disk is an OSError (ENOSPC) naming the file, whatever wrote
    # the bytes (torch's own writer would report it as a RuntimeError about its zip container).
    # atomic_write fsyncs the file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        if exc.errno:
            exc.filename = exc.filename or str(path)
        raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: _write_all(tmp, data))


def write_failure(exc: OSError, what: str) -> str:
    """A plain message for an :class:`OSError` met writing ``what``: ``no space left on device
    writing checkpoint ... (...)``."""
    reason = (exc.strerror or str(exc)).lower() if exc.errno != errno.ENOSPC else ""
    reason = reason or "no space left on device"
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{reason} writing {what}{where}"
