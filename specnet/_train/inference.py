"""Saved weights at work: the loss and metrics on a split of the spec's data, predictions."""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from specnet._build.compiler import build_module
from specnet._front.errors import UsageError
from specnet._front.extras import evaluate_needs, predict_needs, require, weights_needs
from specnet._front.spec import Spec

from .checkpoint import atomic_write, find_checkpoint, load_weights, model_hash
from .data import Split, check_fits, load_dataset, single_input
from .trainer import Trainer, resolve_device

__all__ = ["evaluate_checkpoint", "predict_file", "trainer_with_weights"]


def trainer_with_weights(spec: Spec, checkpoint: str | os.PathLike[str]) -> Trainer:
    """A trainer with the spec's settings on its model, holding the weights ``checkpoint``
    names (see :func:`~specnet._train.checkpoint.find_checkpoint`)."""
    require(weights_needs(), "loading weights")
    device = resolve_device(spec.train.device if spec.train is not None else "auto")
    model = build_module(spec, device)
    load_weights(find_checkpoint(checkpoint), model, model_hash(spec.data))
    return Trainer.from_spec(spec, model=model)


def evaluate_checkpoint(
    spec: Spec, checkpoint: str | os.PathLike[str], split: Split = "test"
) -> dict[str, float]:
    """The loss and the spec's metrics of saved weights on a split of the spec's data."""
    require(evaluate_needs(spec.train), "evaluating")  # the data's package too: before any work
    trainer = trainer_with_weights(spec, checkpoint)
    t = spec.train
    if t is None or t.data is None:
        raise UsageError(f"{spec.source.file or 'the spec'} has no train.data to evaluate on")
    data = load_dataset(t.data, split, input=single_input(spec), seed=t.seed, source=spec.source)
    if data is None:
        raise UsageError(f"{t.data.type} has no {split} split")
    check_fits(data, f"{t.data.type} ({split} split)", spec.inputs, spec.source)
    return trainer.evaluate(data)


def predict_file(
    spec: Spec,
    checkpoint: str | os.PathLike[str],
    inputs: str | os.PathLike[str],
    output: str | os.PathLike[str],
) -> list[int]:
    """Run saved weights on the tensor in the ``.pt`` file ``inputs`` (``[N, *input]``, or a
    mapping with it as ``x``) and ``torch.save`` the outputs to ``output``; their shape."""
    require(predict_needs(), "predicting")
    trainer = trainer_with_weights(spec, checkpoint)
    try:
        loaded: Any = torch.load(inputs, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise UsageError(f"cannot read --input {inputs}: {exc}") from None
    x = loaded.get("x") if isinstance(loaded, dict) else loaded
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"--input {inputs}: expected a tensor, or a mapping with a tensor 'x'")
    want = single_input(spec)
    if tuple(x.shape[1:]) != want.shape or x.dtype != getattr(torch, want.dtype):
        raise UsageError(
            f"--input {inputs}: samples of shape {list(x.shape[1:])} "
            f"({str(x.dtype).removeprefix('torch.')}); the spec's input is "
            f"{list(want.shape)} ({want.dtype})"
        )
    preds = trainer.predict(x)
    atomic_write(output, lambda tmp: torch.save(preds, tmp))
    return list(preds.shape)
