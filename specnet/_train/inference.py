"""Saved weights at work: the loss and metrics on a split of the spec's data, predictions, and
a run folder loaded back as a module (:func:`load_run`), its data set's preprocessing in front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from specnet._build.compiler import build_module
from specnet._front.errors import UsageError
from specnet._front.extras import evaluate_needs, predict_needs, require, weights_needs
from specnet._front.outputs import check_writable
from specnet._front.spec import Spec

from .checkpoint import find_checkpoint, load_weights, model_hash
from .data import (
    Split,
    check_fits,
    dense_problem,
    load_dataset,
    preprocessing,
    read_tensors,
    single_input,
)
from .errors import RunFolderError
from .files import atomic_write, write_failure
from .preprocess import Preprocess, Preprocessed
from .record import read_record
from .trainer import Trainer, resolve_device

__all__ = [
    "evaluate_checkpoint",
    "load_run",
    "predict_file",
    "run_preprocess",
    "trainer_with_weights",
]


def _run_folder(checkpoint: str | os.PathLike[str]) -> Path | None:
    """The run folder a ``--checkpoint`` path is in (itself, or above its checkpoints/)."""
    p = Path(checkpoint)
    for folder in (p, p.parent, p.parent.parent) if not p.is_dir() else (p, p.parent):
        if (folder / "spec.yaml").is_file() or (folder / "run.json").is_file():
            return folder
    return None


def run_preprocess(spec: Spec, checkpoint: str | os.PathLike[str] | None) -> Preprocess | None:
    """The preprocessing of the weights ``checkpoint`` names: the one its run folder's
    ``run.json`` records, else (a run of an older specnet, or a lone weights file) the one
    the spec's data set applies."""
    folder = _run_folder(checkpoint) if checkpoint is not None else None
    record = read_record(folder) if folder is not None else None
    if record is not None and "preprocess" in record:
        try:
            return Preprocess.from_json(record["preprocess"])
        except ValueError as exc:
            raise RunFolderError(f"{folder}/run.json: preprocess: {exc}") from None
    t = spec.train
    return preprocessing(t.data, t.seed) if t is not None else None


def trainer_with_weights(spec: Spec, checkpoint: str | os.PathLike[str]) -> Trainer:
    """A trainer with the spec's settings on its model, holding the weights ``checkpoint``
    names (see :func:`~specnet._train.checkpoint.find_checkpoint`)."""
    require(weights_needs(), "loading weights")
    device = resolve_device(spec.train.device if spec.train is not None else "auto", spec.source)
    model = build_module(spec, device)
    load_weights(find_checkpoint(checkpoint), model, model_hash(spec.data))
    trainer = Trainer.from_spec(spec, model=model)
    if trainer.settings.threads == "auto" and trainer.device.type == "cpu":
        trainer.state.threads = _run_threads(checkpoint)
    return trainer


def _run_threads(checkpoint: str | os.PathLike[str]) -> int | None:
    """The thread count that the run of the weights ``checkpoint`` names measured (its
    ``run.json``), which evaluation and prediction use as the run's own did, at most torch's
    count here (another machine's cores, or the caller's ``OMP_NUM_THREADS``); None for a lone
    weights file or a run that recorded none (torch's count then)."""
    folder = _run_folder(checkpoint)
    record = read_record(folder) if folder is not None else None
    count = record.get("threads") if record is not None else None
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return None
    return min(count, torch.get_num_threads())


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
    *,
    preprocess: bool = True,
) -> list[int]:
    """Run saved weights on the tensor in the ``.pt`` file ``inputs`` (``[N, *input]``, or a
    mapping with it as ``x``) and ``torch.save`` the outputs to ``output``; their shape.

    The inputs are the data set's raw ones: the normalisation it applied in training is
    applied first (:func:`run_preprocess`), unless ``preprocess`` is false."""
    require(predict_needs(), "predicting")
    check_writable(output, "--output")
    trainer = trainer_with_weights(spec, checkpoint)
    x = _read_input(inputs)
    want = single_input(spec)
    if tuple(x.shape[1:]) != want.shape or x.dtype != getattr(torch, want.dtype):
        raise UsageError(
            f"--input {inputs}: samples of shape {list(x.shape[1:])} "
            f"({str(x.dtype).removeprefix('torch.')}); the spec's input is "
            f"{list(want.shape)} ({want.dtype})"
        )
    pre = run_preprocess(spec, checkpoint) if preprocess else None
    preds = trainer.predict(pre.module()(x) if pre is not None else x)
    try:
        atomic_write(output, lambda tmp: torch.save(preds, tmp))
    except OSError as exc:
        raise UsageError(write_failure(exc, f"--output {output}")) from None
    return list(preds.shape)


def _read_input(inputs: str | os.PathLike[str]) -> torch.Tensor:
    """The tensor of the ``--input`` file (a tensor, or a mapping with it as ``x``)."""
    try:
        loaded = read_tensors(inputs)
    except ValueError as exc:
        raise UsageError(f"cannot read --input {inputs}: {exc}") from None
    x = loaded.get("x") if isinstance(loaded, dict) else loaded
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"--input {inputs}: expected a tensor, or a mapping with a tensor 'x'")
    sparse = dense_problem(x)
    if sparse is not None:
        raise UsageError(f"--input {inputs}: {sparse}")
    return x


def load_run(
    folder: str | os.PathLike[str],
    *,
    weights: Literal["final", "best", "last"] = "final",
    preprocess: bool = True,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, Spec]:
    """A trained run folder as ``(module, spec)``: the spec it trained (its ``spec.yaml``),
    built and holding its weights, in eval mode.

    ``weights``: ``"final"`` (``model.safetensors``; a run that has not finished: its newest
    whole checkpoint), ``"best"`` (``best.safetensors``, the epoch with the best monitored
    metric) or ``"last"`` (the newest whole checkpoint). The weights' manifest is checked.
    With ``preprocess`` (and a data set that normalises its inputs, as Digits does), the
    module is a :class:`~specnet._train.preprocess.Preprocessed`: it takes the data set's raw
    inputs and applies the recorded normalisation first (``module.model`` is the bare
    network); its outputs are ``specnet predict``'s.
    """
    from specnet._front.source import read_document
    from specnet._front.validate import validate_document

    root = Path(folder)
    if not (root / "spec.yaml").is_file():
        raise RunFolderError(f"{root} is not a run folder: it has no spec.yaml")
    spec = validate_document(read_document(root / "spec.yaml"))
    require(weights_needs(), "loading weights")
    targets = {"final": root, "best": root / "best.safetensors", "last": root / "checkpoints"}
    if weights not in targets:
        raise UsageError(f"weights={weights!r}: one of {', '.join(map(repr, targets))}")
    target = targets[weights]
    if weights == "best" and not target.is_file():
        raise RunFolderError(f"{root} has no best.safetensors (its run evaluated no split)")
    if str(device) == "meta":
        raise UsageError("device='meta' holds no weights: load a run on a real device")
    chosen = resolve_device(device) if device is not None else torch.device("cpu")
    model = build_module(spec, chosen)
    load_weights(find_checkpoint(target), model, model_hash(spec.data))
    model.eval()
    pre = run_preprocess(spec, root) if preprocess else None
    if pre is None:
        return model, spec
    return Preprocessed(model, pre.module().to(chosen)).eval(), spec
