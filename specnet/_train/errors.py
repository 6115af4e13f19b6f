"""The errors of training a user can cause (the tree is in ``specnet._front.errors``)."""

from __future__ import annotations

from specnet._front.errors import SpecnetError

__all__ = ["CheckpointError", "NonFiniteLossError", "TrainingError"]


class CheckpointError(SpecnetError, ValueError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


class TrainingError(SpecnetError, ValueError):
    """The trainer's settings do not fit the model, the data or the processes."""


class NonFiniteLossError(SpecnetError, FloatingPointError):
    """The training loss is not finite: training stopped before any state was saved."""
