"""``curves.png``: a run's loss and metric curves, drawn by matplotlib.

Importing matplotlib takes about half a second, which a small run would spend at its very end
(the curves need every epoch). So a run starts a painter (:class:`Painter`): a process that
imports matplotlib while the run itself starts (importing torch and reading its data, work of
one core), then waits for the history and draws it. If the painter cannot start, or fails,
the curves are drawn in the run's own process, as :func:`plot_curves` always can.

``python -m specnet._train.curves`` is the painter: it reads ``{"path": ..., "history": [...]}``
as JSON from stdin and writes the PNG (atomically). It does not import torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .files import atomic_write

__all__ = ["Painter", "plot_curves"]


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Loss curves (train and validation) and one panel per validation metric, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    evaluated = [k for k in _columns(history) if k.startswith(("val_", "test_"))]
    metrics = [k for k in evaluated if not k.endswith("_loss")]
    fig = Figure(figsize=(5 * (1 + len(metrics)), 3.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(metrics), squeeze=False)[0]
    epochs = [r["epoch"] for r in history]
    for key in ("train_loss", *(k for k in evaluated if k.endswith("_loss"))):
        values = [r.get(key, math.nan) for r in history]
        if any(math.isfinite(v) for v in values):
            axes[0].plot(epochs, values, marker="o", label=key.replace("_", " "))
    axes[0].set(title="loss", xlabel="epoch")
    axes[0].legend()
    for ax, key in zip(axes[1:], metrics, strict=True):
        ax.plot(epochs, [r.get(key, math.nan) for r in history], marker="o")
        ax.set(title=key.replace("_", " "), xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


class Painter:
    """A process that has imported matplotlib by the time the curves are due (see the module's
    docstring); :meth:`draw` hands it the history, or draws in this process if it cannot."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._sent: tuple[subprocess.Popen[bytes], list[Mapping[str, Any]], str] | None = None
        """The drawing handed over and not yet waited for: the process, history and path."""
        with contextlib.suppress(OSError):
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__],  # -P: not the working directory's
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def draw(self, history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
        """Hand the history over and return: the painter draws while the run writes its last
        files; :meth:`finish` waits for it. Without a painter, draws here at once."""
        process, self._process = self._process, None
        rows = list(history)
        if process is not None and process.stdin is not None:
            try:
                message = json.dumps({"path": os.fspath(path), "history": rows})
                process.stdin.write(message.encode("utf-8"))
                process.stdin.close()
                self._sent = (process, rows, os.fspath(path))
                return
            except (OSError, ValueError):
                process.kill()
                process.wait()
        plot_curves(rows, path)  # no painter: here, to raise what goes wrong

    def finish(self) -> None:
        """Wait for the curves handed over; if the painter failed, draw them here."""
        sent, self._sent = self._sent, None
        if sent is None:
            return
        process, rows, path = sent
        try:
            if process.wait(timeout=120) == 0:
                return
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        plot_curves(rows, path)  # the painter failed: here, to raise what went wrong

    def close(self) -> None:
        """Stop the painter: one that has not been given curves exits at once; one drawing is
        waited for (the run stopped after its curves were due, e.g. on a non-finite loss)."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()  # it reads nothing and exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(Exception):  # another error is on its way out
            self.finish()


def _paint() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure

    text = sys.stdin.read()
    if not text:
        return 0
    job = json.loads(text)
    plot_curves(job["history"], job["path"])
    return 0


if __name__ == "__main__":
    code = _paint()
    # The curves are written (atomically): the run waits for this process's exit, and
    # matplotlib's teardown would add half the drawing's time again. A failure exits the usual
    # way, with its traceback.
    sys.stdout.flush()
    os._exit(code)
