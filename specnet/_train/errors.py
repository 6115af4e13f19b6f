"""The errors of training a user can cause (the tree is in ``specnet._front.errors``)."""

from __future__ import annotations

from specnet._front.errors import SpecnetError

__all__ = [
    "CheckpointError",
    "Interrupted",
    "NonFiniteLossError",
    "RunFolderError",
    "TrainingError",
]


class CheckpointError(SpecnetError, ValueError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


class TrainingError(SpecnetError, ValueError):
    """The trainer's settings do not fit the model, the data or the processes."""


class NonFiniteLossError(SpecnetError, FloatingPointError):
    """The training loss is not finite: training stopped before any state was saved."""


class RunFolderError(SpecnetError, OSError):
    """The run folder cannot be written: not a folder, read-only, or no space left."""


class Interrupted(SpecnetError):
    """A run was stopped by a signal (SIGTERM); its last checkpoint resumes it."""

    exit_code = 143
