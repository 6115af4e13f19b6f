"""The run folder's callbacks beyond the CSV files: TensorBoard events and the best weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import save_weights
from .trainer import Callback, Trainer

__all__ = ["BestWeights", "TensorBoardLog"]


class TensorBoardLog(Callback):
    """Writes the training loss and learning rate of every log row (``train/loss``,
    ``train/lr`` by optimizer step) and each epoch's row (``epoch/<column>``, by optimizer
    step) as TensorBoard events into ``folder`` through ``torch.utils.tensorboard``.

    After a resume the events written past the checkpoint are dropped (``purge_step``), as the
    CSV files' rows are.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        self._writer = SummaryWriter(
            str(self.folder), purge_step=trainer.step + 1 if trainer.step else None
        )

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.add_scalar("train/loss", row["train_loss"], row["step"])
            self._writer.add_scalar("train/lr", row["lr"], row["step"])

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                self._writer.add_scalar(f"epoch/{key}", value, row["step"])
        self._writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class BestWeights(Callback):
    """Saves the weights of each epoch that improves the trainer's monitored metric to
    ``path`` (``best.safetensors``, with its manifest ``best.json``), atomically: the file
    always holds the best epoch's weights so far."""

    def __init__(self, path: str | os.PathLike[str], model_hash: str | None) -> None:
        self.path = Path(path)
        self.model_hash = model_hash

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.improved:
            with torch.no_grad():
                save_weights(self.path, trainer.model, self.model_hash)
