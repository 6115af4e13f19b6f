"""Preprocessing that travels with a model: the normalisation its data set applied in training.

A model trained on standardised inputs gives nonsense on raw ones (the Digits CNN: 99% on what
its data set gives, 12% on pixel values). So a run records the normalisation in ``run.json``
(:meth:`Preprocess.to_json`), and ``specnet predict`` and :func:`specnet.load_run` apply it: the
inputs they take are the data set's raw ones (:attr:`Preprocess.input` says what those are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Normalize", "Preprocess", "Preprocessed"]


@dataclass(frozen=True)
class Preprocess:
    """``(x - mean) / std``, per channel (dimension 1 of a batch) or, with one value each, for
    every element: what a data set does to its raw inputs before the model sees them."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input: str
    """What the raw inputs are, in words (``scikit-learn's pixel values, 0 to 16``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "Normalize",
            "mean": list(self.mean),
            "std": list(self.std),
            "input": self.input,
        }

    @classmethod
    def from_json(cls, data: object) -> Preprocess | None:
        """The preprocessing ``to_json`` wrote (``None`` for none); ``ValueError`` if damaged."""
        if data is None:
            return None
        if not isinstance(data, Mapping) or data.get("type") != "Normalize":
            raise ValueError(f"expected a Normalize mapping, got {data!r}")
        mean, std = _floats(data.get("mean")), _floats(data.get("std"))
        finite = all(math.isfinite(v) for v in (*mean, *std))
        if not mean or len(mean) != len(std) or not finite or any(s <= 0 for s in std):
            raise ValueError(
                f"mean and std must be lists of one length of finite numbers, std > 0: {data!r}"
            )
        return cls(mean, std, str(data.get("input", "")))

    def module(self) -> Normalize:
        return Normalize(self.mean, self.std)


def _floats(value: object) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ()
    return tuple(float(v) for v in value)


class Normalize(nn.Module):
    """``(x - mean) / std`` over dimension 1 of a batch (every element with one value).

    The statistics are buffers left out of the state_dict: they belong to the data, not to
    the weights (a run's ``model.safetensors`` loads into the bare model).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.numel() == 1:
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return (x - self.mean.to(x.dtype).view(shape)) / self.std.to(x.dtype).view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Preprocessed(nn.Module):
    """A trained model with its data set's preprocessing in front: ``model(preprocess(x))``.

    ``state_dict()`` keys are the model's under ``model.``; ``.model`` is the bare network.
    """

    def __init__(self, model: nn.Module, preprocess: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(self.preprocess(x))
