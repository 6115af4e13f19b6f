"""``run.json``: what a run folder's weights came from, and how to use them.

Written when training starts and again when it ends (atomically, readable like every file of
the run folder)::

    {"specnet": "0.2.0", "torch": "2.14.1", "python": "3.12.3", "platform": "Linux-...",
     "command": "specnet train examples/digits_cnn.yaml", "started": "2026-12-02T18:00:00+00:00",
     "device": "cpu", "world_size": 1, "threads": 1, "seed": 0,
     "thread_step_ms": {"1": 2.41, "2": 7.6} or null (threads: auto's mean step per count),
     "git": {"commit": "535968c...", "dirty": false} or null (the spec's repository),
     "preprocess": {"type": "Normalize", "mean": [...], "std": [...], "input": "..."} or null,
     "evaluated": "val" (the split evaluated each epoch) or "test" or null,
     "monitor": "val_loss", "mode": "min",
     "best": {"epoch": 7, "value": 0.0412, "weights": "best.safetensors"} or null,
     "stopped_early": false, "epochs": 15,
     "train_seconds": 3.71 (this process's training: the checks before the first step, the
                            thread measuring, the epochs, validation and checkpoints),
     "test": {"loss": 0.05, "accuracy": 0.986} or null (the final weights on the test split)}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from specnet._front.version import installed_version

from .errors import RunFolderError
from .files import atomic_write_bytes
from .preprocess import Preprocess

__all__ = ["RUN_RECORD", "git_state", "read_record", "start_record", "write_record"]

RUN_RECORD = "run.json"


def git_state(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The commit of the git repository holding ``path`` (a spec file), and whether its work
    tree has changes; None outside a repository or without git."""
    if path is None:
        return None
    folder = Path(path).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            # --no-optional-locks: reading the state never rewrites the user's index
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(folder),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def start_record(
    *,
    command: str,
    spec_file: str | None,
    device: torch.device,
    world_size: int,
    seed: int,
    preprocess: Preprocess | None,
) -> dict[str, Any]:
    """The record's fields known before training starts."""
    return {
        "specnet": installed_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": command,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "world_size": world_size,
        "threads": None,
        "seed": seed,
        "git": git_state(spec_file),
        "preprocess": preprocess.to_json() if preprocess is not None else None,
    }


def write_record(folder: Path, record: Mapping[str, Any]) -> None:
    text = json.dumps(dict(record), indent=2, default=str) + "\n"
    atomic_write_bytes(folder / RUN_RECORD, text.encode("utf-8"))


def read_record(folder: Path) -> dict[str, Any] | None:
    """A run folder's ``run.json`` (None when it has none: a run of an older specnet)."""
    path = folder / RUN_RECORD
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is not a run record (a JSON object)")
    return data
