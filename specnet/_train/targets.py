"""What a loss needs of its targets, checked against the data before the first step.

torch checks targets inside the first forward pass, with messages about tensors (``Target 8 is
out of bounds``, ``expected scalar type Long``), or not at all: an elementwise loss whose target
broadcasts against the output only warns, and trains on the wrong thing. :func:`target_problem`
says, in the data's terms, why a loss cannot take a data set's targets, from the model's output
on a sample batch and the data set's labels.

The rules follow the loss's torch class (so a loss given as an object is checked too):

- class-index losses (``CrossEntropyLoss``, ``NLLLoss``, ``MultiMarginLoss``): int64 labels
  shaped like the output without its class dimension, each in ``0 .. classes - 1`` (or the
  loss's ``ignore_index``); ``CrossEntropyLoss`` also takes float class probabilities shaped
  like the output; a class ``weight`` has one entry per class;
- elementwise losses (``MSELoss``, ``L1Loss``, ``BCEWithLogitsLoss``, ...): float targets of
  exactly the output's shape.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CLASS_INDEX_LOSSES", "ELEMENTWISE_LOSSES", "target_problem"]

CLASS_INDEX_LOSSES: tuple[type[nn.Module], ...] = (
    nn.CrossEntropyLoss,
    nn.NLLLoss,
    nn.MultiMarginLoss,
)
"""Losses whose targets are class indices along the output's dimension 1."""

ELEMENTWISE_LOSSES: tuple[type[nn.Module], ...] = (
    nn.MSELoss,
    nn.L1Loss,
    nn.SmoothL1Loss,
    nn.HuberLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.SoftMarginLoss,
    nn.MultiLabelSoftMarginLoss,
    nn.PoissonNLLLoss,
    nn.KLDivLoss,
)
"""Losses that compare the output with a target of the same shape, element by element."""


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def target_problem(
    loss: object, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None = None
) -> str | None:
    """Why ``loss`` cannot take the targets ``y`` of a sample batch with the model's output
    ``out`` on it (``labels``: every target of the data set, when at hand), or None."""
    name = type(loss).__name__
    if isinstance(loss, CLASS_INDEX_LOSSES):
        return _class_index(loss, name, out, y, labels)
    if isinstance(loss, ELEMENTWISE_LOSSES):
        if tuple(y.shape) != tuple(out.shape):
            return (
                f"{name} compares the output with a target of the same shape, element by "
                f"element: the model's output is {_shape(out)} for a batch but the targets are "
                f"{_shape(y)} (torch would broadcast them against each other); give targets "
                f"shaped {list(out.shape[1:])} per sample"
            )
        if not y.is_floating_point():
            return f"{name} needs float targets, got {_dtype(y)} ones; store the targets as float32"
    return None


def _class_index(
    loss: object, name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None
) -> str | None:
    if out.ndim < 1 or (out.ndim < 2 and y.ndim > 0):
        return None
    classes = int(out.shape[1]) if out.ndim >= 2 else int(out.shape[0])
    weight = getattr(loss, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.numel() != classes:
        return (
            f"{name}'s weight has {weight.numel()} entries, but the model gives {classes} class "
            f"scores per sample: give one weight per class ({classes})"
        )
    per_sample = [int(out.shape[0]), *out.shape[2:]]
    if y.is_floating_point():
        if isinstance(loss, nn.CrossEntropyLoss) and tuple(y.shape) == tuple(out.shape):
            return None  # class probabilities
        return (
            f"{name} needs class labels (int64, shaped {per_sample} for this batch), or, for "
            f"CrossEntropyLoss, class probabilities shaped like the output {_shape(out)}; "
            f"got {_dtype(y)} targets of shape {_shape(y)}"
        )
    if y.dtype != torch.int64:
        return (
            f"{name} needs int64 class labels, got {_dtype(y)} ones; store the labels as int64 "
            "(torch.long)"
        )
    if list(y.shape) != per_sample:
        return (
            f"{name} needs one class label per sample, shaped {per_sample} for this batch "
            f"(the output {_shape(out)} without its class dimension 1); got labels of shape "
            f"{_shape(y)}"
        )
    every = labels if labels is not None and labels.dtype == torch.int64 else y
    ignore = getattr(loss, "ignore_index", None)
    kept = every[every != ignore] if isinstance(ignore, int) else every
    if kept.numel() == 0:
        return None
    low, high = int(kept.min()), int(kept.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        return (
            f"a label is {bad}, but the model gives {classes} class scores per sample: {name} "
            f"needs labels in 0..{classes - 1} (the labels go from {low} to {high})"
        )
    return None
