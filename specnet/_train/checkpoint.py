"""Checkpoints: the model's weights in safetensors, the rest of the training state in torch.save.

A checkpoint is two files in a folder, named by the optimizer step::

    step-000130.safetensors   the model's state_dict, with the spec's model hash as metadata
    step-000130.pt            Trainer.state_dict(): its TrainerState (counters, history,
                              every random state), the optimizer's, schedule's and scaler's
                              states; read with weights_only=True

Each file is written to a temporary file in the same folder, flushed and fsync'ed, renamed
over its final name with :func:`os.replace`, and the folder is fsync'ed: a crash leaves the
previous file or the new one, never a torn one. The ``.pt`` file is written last, so a
checkpoint counts only once both files exist. The newest complete checkpoint is the one to
resume; older ones are removed once a newer one is complete.

The ``.pt`` file says which layout it holds (``format``); :func:`load_state` reads the older
layouts too, into the current one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .distributed import world_size_mismatch
from .errors import CheckpointError
from .trainer import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "FORMAT",
    "Checkpoint",
    "Checkpointer",
    "atomic_write",
    "check_world_size",
    "clear_checkpoints",
    "find_checkpoint",
    "latest_checkpoint",
    "load_options",
    "load_state",
    "load_weights",
    "model_hash",
    "save_checkpoint",
    "save_weights",
]

HASH_KEY = "specnet_model_hash"
_NAME = re.compile(r"^step-(\d+)\.pt$")

FORMAT = 2
"""The layout of the state files written now: 2 has a field per :class:`TrainerState` counter;
1 (before it) kept the loss sums in one list and rank 0's random state apart."""


def _from_format_1(state: Mapping[str, Any]) -> dict[str, Any]:
    """A trainer state of format 1 in the current layout."""
    new = dict(state)
    epoch_loss, epoch_batches, interval_loss, interval_batches = new.pop("sums")
    new.update(
        epoch_loss=float(epoch_loss),
        epoch_batches=int(epoch_batches),
        interval_loss=float(interval_loss),
        interval_batches=int(interval_batches),
    )
    rank_0 = new.pop("rng")
    new["rng_per_rank"] = new["rng_per_rank"] or [rank_0]
    return new


def model_hash(data: Mapping[str, Any]) -> str:
    """A hash of what determines a spec's weights: its input, blocks and model sections.

    Comments, formatting, the name and the ``train:`` section do not change it.
    """
    part = {k: data.get(k) for k in ("input", "blocks", "model")}
    text = json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - folders cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Write a file so that a crash leaves either its old contents or its new ones.

    ``write`` writes the new contents to the temporary path it is given (in ``path``'s folder);
    the file is then fsync'ed, renamed over ``path`` and the folder fsync'ed.
    """
    target = Path(path)
    # A fresh name in the same folder (so os.replace is a rename), created by ``write`` with
    # the usual permissions (mkstemp's would be 0600).
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def save_weights(path: str | os.PathLike[str], model: nn.Module, model_hash: str | None) -> None:
    """The model's state_dict as safetensors (written atomically), tagged with the hash."""
    from safetensors.torch import save_model

    metadata = {HASH_KEY: model_hash} if model_hash else {}
    atomic_write(path, lambda tmp: save_model(model, str(tmp), metadata=metadata))


def _check_hash(found: str | None, expected: str | None, path: Path) -> None:
    if expected is not None and found is not None and found != expected:
        raise CheckpointError(
            f"{path} holds weights of another model (model hash {found}, this spec's is "
            f"{expected}): the spec's input, blocks or model differ from the run that saved it"
        )


def load_weights(
    path: str | os.PathLike[str], model: nn.Module, model_hash: str | None = None
) -> None:
    """Load safetensors weights into ``model`` (strictly), refusing another model's weights."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read weights {p}: {exc}") from None
    _check_hash(meta.get(HASH_KEY), model_hash, p)
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    try:
        load_model(model, str(p), strict=True, device=str(device))
    except RuntimeError as exc:
        raise CheckpointError(f"{p} does not fit the model: {exc}") from None


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint on disk."""

    step: int
    weights: Path
    state: Path


def _complete(folder: Path) -> list[Checkpoint]:
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            weights = p.with_suffix(".safetensors")
            if m and weights.is_file():
                found.append(Checkpoint(int(m.group(1)), weights, p))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest complete checkpoint in ``folder``, if any."""
    done = _complete(Path(folder))
    return done[-1] if done else None


def clear_checkpoints(folder: str | os.PathLike[str]) -> None:
    """Remove the checkpoints (and temporary files of interrupted writes) in ``folder``."""
    p = Path(folder)
    if not p.is_dir():
        return
    for f in p.iterdir():
        if _NAME.match(f.name) or re.match(
            r"^(\.)?step-\d+\.(pt|safetensors)(\..*\.tmp)?$", f.name
        ):
            f.unlink(missing_ok=True)


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    trainer_state: Mapping[str, Any],
    model_hash: str | None,
    *,
    keep: int = 2,
    options: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Write a checkpoint (weights, then state) and remove all but the ``keep`` newest.

    ``options`` (plain values) are saved with it, e.g. the run's settings for a resume.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    step = int(trainer_state["step"])
    stem = out / f"step-{step:06d}"
    weights, state = stem.with_suffix(".safetensors"), stem.with_suffix(".pt")
    save_weights(weights, model, model_hash)
    payload = {
        "format": FORMAT,
        HASH_KEY: model_hash,
        "trainer": dict(trainer_state),
        "options": dict(options or {}),
    }
    atomic_write(state, lambda tmp: torch.save(payload, tmp))
    for old in _complete(out)[:-keep] if keep > 0 else []:
        for p in (old.state, old.weights):  # the state first: it marks a checkpoint complete
            with contextlib.suppress(OSError):
                p.unlink()
    return Checkpoint(step, weights, state)


def load_state(path: str | os.PathLike[str], model_hash: str | None = None) -> dict[str, Any]:
    """A checkpoint's trainer state in the current layout (read with ``weights_only=True``),
    refusing another model's."""
    payload = _payload(path, model_hash)
    state: dict[str, Any] = payload["trainer"]
    return _from_format_1(state) if payload["format"] == 1 else state


def load_options(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``options`` saved with a checkpoint."""
    options: dict[str, Any] = _payload(path, None).get("options", {})
    return options


def _payload(path: str | os.PathLike[str], model_hash: str | None) -> dict[str, Any]:
    p = Path(path)
    try:
        payload = torch.load(p, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") not in (1, FORMAT):
        raise CheckpointError(f"{p} is not a specnet checkpoint")
    _check_hash(payload.get(HASH_KEY), model_hash, p)
    return payload


def check_world_size(path: Path, state: Mapping[str, Any], world_size: int) -> None:
    """Refuse to resume a trainer state in another number of processes than saved it."""
    problem = world_size_mismatch(state, world_size, str(path))
    if problem:
        raise CheckpointError(problem)


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The weights file a ``--checkpoint`` argument names.

    ``path`` may be a ``.safetensors`` file, a checkpoint's ``.pt`` file, a folder of
    checkpoints, or a run folder (its final ``model.safetensors``, else its newest checkpoint).
    """
    p = Path(path)
    if p.is_file():
        return p.with_suffix(".safetensors") if p.suffix == ".pt" else p
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p / "model.safetensors"
        for folder in (p / "checkpoints", p):
            found = latest_checkpoint(folder)
            if found is not None:
                return found.weights
    raise CheckpointError(f"no checkpoint at {p}")


class Checkpointer(Callback):
    """Saves a checkpoint every ``every`` optimizer steps (if given) and at each epoch's end."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        model_hash: str | None = None,
        every: int | None = None,
        keep: int = 2,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.options = dict(options or {})
        self.model_hash = model_hash
        self.every = every
        self.keep = keep
        self.last: Checkpoint | None = None

    def save(self, trainer: Trainer) -> Checkpoint | None:
        """Save a checkpoint (in several processes: all gather the state, rank 0 writes)."""
        state = trainer.state_dict()  # raises first if the loss went non-finite
        if not trainer.strategy.is_main:
            return None
        self.last = save_checkpoint(
            self.folder, trainer.model, state, self.model_hash, keep=self.keep, options=self.options
        )
        return self.last

    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        if (
            self.every
            and trainer.at_step_boundary
            and trainer.step % self.every == 0
            and trainer.batch_in_epoch != trainer.batches_per_epoch  # the epoch's end saves
        ):
            self.save(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.save(trainer)

    def resume(self, trainer: Trainer) -> Checkpoint | None:
        """Load the newest checkpoint into ``trainer`` (weights and state); ``None`` if none."""
        found = latest_checkpoint(self.folder)
        if found is None:
            return None
        state = load_state(found.state, self.model_hash)
        check_world_size(found.state, state, trainer.world_size)
        load_weights(found.weights, trainer.model, self.model_hash)
        trainer.load_state_dict(state)
        self.last = found
        return found
