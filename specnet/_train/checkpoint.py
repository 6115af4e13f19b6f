"""Checkpoints: the model's weights in safetensors, the rest of the training state in torch.save.

A checkpoint is three files in a folder, named by the optimizer step::

    step-000130.safetensors   the model's state_dict, with the spec's model hash and the step
                              as metadata
    step-000130.pt            Trainer.state_dict(): its TrainerState (counters, history,
                              every random state), the optimizer's, schedule's and scaler's
                              states; read with weights_only=True
    step-000130.json          the manifest: the step, and each file's size and sha256

Each file is serialized in memory, written to a temporary file in the same folder, fsync'ed,
renamed over its final name with :func:`os.replace`, and the folder is fsync'ed: a crash leaves
the previous file or the new one, never a torn one. The manifest is written last, as the
checkpoint's commit marker: a checkpoint counts only once it is there, and a resume checks every
file against it (:func:`check_checkpoint`), so a torn, damaged or mismatched file is found, named,
and skipped for the newest checkpoint that is whole (:func:`verified_checkpoint`). A write that
fails (a full disk) removes the checkpoint's partial files and keeps the earlier ones. Older
checkpoints are removed only once a newer one is complete.

Checkpoints written before manifests existed still resume: their state file must load and
name the step of its file name, and the weights' header must be whole (their tensors' bytes
cannot be checked). The final ``model.safetensors`` of a run has a manifest too
(``model.json``), checked whenever the weights are loaded.

The ``.pt`` file says which layout it holds (``format``); :func:`load_state` reads the older
layouts too, into the current one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .distributed import world_size_mismatch
from .errors import CheckpointError, RunFolderError
from .files import atomic_write_bytes, write_failure
from .trainer import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "FORMAT",
    "Checkpoint",
    "Checkpointer",
    "check_checkpoint",
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
    "verified_checkpoint",
    "write_failure",
]

HASH_KEY = "specnet_model_hash"
STEP_KEY = "specnet_step"
"""The weights' metadata: the optimizer step of the checkpoint they belong to."""
MANIFEST_KEY = "manifest"
"""In a state file: ``True`` when its checkpoint has a manifest (written since manifests exist)."""
_NAME = re.compile(r"^step-(\d+)\.(pt|safetensors|json)$")

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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weights_bytes(model: nn.Module, metadata: dict[str, str]) -> bytes:
    """The model's state_dict as safetensors bytes, as ``safetensors.torch.save_model`` writes
    them (tensors that share memory once, contiguous)."""
    from safetensors.torch import _remove_duplicate_names, save

    state_dict = model.state_dict()
    for kept, removed in _remove_duplicate_names(state_dict).items():
        for name in removed:
            metadata.setdefault(name, kept)
            del state_dict[name]
    data: bytes = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=metadata)
    return data


def _manifest(step: int | None, files: Mapping[str, bytes]) -> bytes:
    entries = {name: {"size": len(data), "sha256": _sha256(data)} for name, data in files.items()}
    doc = {"specnet_manifest": 1, "step": step, "files": entries}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def save_weights(path: str | os.PathLike[str], model: nn.Module, model_hash: str | None) -> None:
    """The model's state_dict as safetensors (written atomically), tagged with the hash, and its
    manifest beside it (``model.safetensors``: ``model.json``)."""
    p = Path(path)
    metadata = {HASH_KEY: model_hash} if model_hash else {}
    data = _weights_bytes(model, metadata)
    atomic_write_bytes(p, data)
    atomic_write_bytes(p.with_suffix(".json"), _manifest(None, {p.name: data}))


def _check_hash(found: str | None, expected: str | None, path: Path) -> None:
    if expected is not None and found is not None and found != expected:
        raise CheckpointError(
            f"{path} holds weights of another model (model hash {found}, this spec's is "
            f"{expected}): the spec's input, blocks or model differ from the run that saved it"
        )


def _read_manifest(path: Path) -> dict[str, Any] | str:
    """The manifest at ``path``, or why it cannot be used."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        return f"{path.name} cannot be read ({(exc.strerror or str(exc)).lower()})"
    except ValueError:
        return f"{path.name} is damaged (not a manifest)"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in files.values()
    ):
        return f"{path.name} is damaged (not a manifest)"
    manifest: dict[str, Any] = doc
    return manifest


def _check_file(path: Path, entry: Mapping[str, Any], manifest: Path) -> str | None:
    """Why the file at ``path`` is not the one ``entry`` of ``manifest`` lists, or None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"{path.name} is missing"
    except OSError as exc:
        return f"{path.name} cannot be read ({(exc.strerror or str(exc)).lower()})"
    if len(data) != entry["size"]:
        return (
            f"{path.name} is damaged: {len(data)} bytes, its manifest {manifest.name} says "
            f"{entry['size']} (truncated or replaced)"
        )
    if _sha256(data) != entry["sha256"]:
        return (
            f"{path.name} is damaged: its sha256 differs from the one in its manifest "
            f"{manifest.name}"
        )
    return None


def _weights_metadata(path: Path) -> dict[str, str] | str:
    """The metadata of the safetensors file at ``path``, or why it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta: dict[str, str] = f.metadata() or {}
    except FileNotFoundError:
        return f"{path.name} is missing"
    except Exception:  # safetensors' errors on a damaged file have no common base
        return f"{path.name} is damaged (not a whole safetensors file)"
    return meta


def load_weights(
    path: str | os.PathLike[str], model: nn.Module, model_hash: str | None = None
) -> None:
    """Load safetensors weights into ``model`` (strictly), refusing another model's weights and
    weights that do not match their manifest (``step-N.json`` or ``<stem>.json`` beside them)."""
    from safetensors.torch import load_model

    p = Path(path)
    for manifest in (p.with_suffix(".json"),):
        if manifest.is_file():
            doc = _read_manifest(manifest)
            if isinstance(doc, str):
                raise CheckpointError(f"cannot check weights {p}: {doc}")
            entry = doc["files"].get(p.name)
            problem = _check_file(p, entry, manifest) if entry else None
            if problem:
                raise CheckpointError(f"cannot load weights {p}: {problem}")
    meta = _weights_metadata(p)
    if isinstance(meta, str):
        raise CheckpointError(f"cannot read weights {p}: {meta}")
    _check_hash(meta.get(HASH_KEY), model_hash, p)
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    try:
        load_model(model, str(p), strict=True, device=str(device))
    except RuntimeError as exc:
        raise CheckpointError(f"{p} does not fit the model: {exc}") from None
    except Exception:  # safetensors' errors on a damaged file
        raise CheckpointError(f"cannot read weights {p}: it is damaged") from None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on disk (its files, whether or not they are all there)."""

    step: int
    weights: Path
    state: Path

    @property
    def manifest(self) -> Path:
        return self.state.with_suffix(".json")

    @property
    def name(self) -> str:
        return self.state.stem


def _candidates(folder: Path) -> list[Checkpoint]:
    """Every step with a state file or a manifest in ``folder``, oldest first."""
    steps: set[int] = set()
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m and m.group(2) != "safetensors":
                steps.add(int(m.group(1)))
    return [
        Checkpoint(step, folder / f"step-{step:06d}.safetensors", folder / f"step-{step:06d}.pt")
        for step in sorted(steps)
    ]


def _complete(folder: Path) -> list[Checkpoint]:
    return [c for c in _candidates(folder) if c.state.is_file() and c.weights.is_file()]


def latest_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest checkpoint in ``folder`` with both files (not checked; see
    :func:`verified_checkpoint`), if any."""
    done = _complete(Path(folder))
    return done[-1] if done else None


def check_checkpoint(found: Checkpoint) -> str | None:
    """Why the checkpoint ``found`` cannot be resumed, naming the bad file, or None if whole.

    With a manifest: every file it lists has its size and sha256, and the weights and the state
    name its step. Without one: the state file must say it predates manifests (else the
    checkpoint's write did not finish), load, and name the step; the weights' header must be
    whole.
    """
    if found.manifest.is_file():
        doc = _read_manifest(found.manifest)
        if isinstance(doc, str):
            return doc
        if doc.get("step") != found.step:
            return f"{found.manifest.name} is the manifest of another step ({doc.get('step')})"
        for name in (found.weights.name, found.state.name):
            entry = doc["files"].get(name)
            if entry is None:
                return f"{found.manifest.name} does not list {name}"
            problem = _check_file(found.state.with_name(name), entry, found.manifest)
            if problem:
                return problem
    meta = _weights_metadata(found.weights)
    if isinstance(meta, str):
        return meta
    if STEP_KEY in meta and meta[STEP_KEY] != str(found.step):
        return (
            f"{found.weights.name} holds the weights of step {meta[STEP_KEY]}, not of step "
            f"{found.step} (an older weights file beside a newer state file)"
        )
    try:
        payload = _payload(found.state, None)
    except CheckpointError as exc:
        return str(exc)
    if not found.manifest.is_file() and payload.get(MANIFEST_KEY):
        return f"{found.manifest.name} is missing: the checkpoint's write did not finish"
    step = payload["trainer"].get("step") if isinstance(payload["trainer"], dict) else None
    if step != found.step:
        return f"{found.state.name} holds the state of step {step}, not of step {found.step}"
    return None


def verified_checkpoint(
    folder: str | os.PathLike[str], on_skip: Callable[[str], object] | None = None
) -> Checkpoint | None:
    """The newest checkpoint in ``folder`` that :func:`check_checkpoint` finds whole, if any;
    ``on_skip(message)`` is called for each newer one skipped, saying which file was bad."""
    for found in reversed(_candidates(Path(folder))):
        problem = check_checkpoint(found)
        if problem is None:
            return found
        if on_skip is not None:
            on_skip(f"skipping checkpoint {found.state.parent / found.name}: {problem}")
    return None


def clear_checkpoints(folder: str | os.PathLike[str]) -> None:
    """Remove the checkpoints (and temporary files of interrupted writes) in ``folder``."""
    p = Path(folder)
    if not p.is_dir():
        return
    for f in p.iterdir():
        if _NAME.match(f.name) or re.match(
            r"^(\.)?step-\d+\.(pt|safetensors|json)(\..*\.tmp)?$", f.name
        ):
            f.unlink(missing_ok=True)


def _remove(found: Checkpoint) -> None:
    # The manifest first: it marks a checkpoint complete.
    for p in (found.manifest, found.state, found.weights):
        with contextlib.suppress(OSError):
            p.unlink()


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    trainer_state: Mapping[str, Any],
    model_hash: str | None,
    *,
    keep: int = 2,
    options: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Write a checkpoint (weights, state, then the manifest) and remove all but the ``keep``
    newest (``keep=0`` keeps all).

    ``options`` (plain values) are saved with it, e.g. the run's settings for a resume. An
    :class:`OSError` while writing (a full disk) removes this checkpoint's files and is raised;
    the earlier checkpoints stay.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    step = int(trainer_state["step"])
    stem = out / f"step-{step:06d}"
    this = Checkpoint(step, stem.with_suffix(".safetensors"), stem.with_suffix(".pt"))
    metadata = {STEP_KEY: str(step)}
    if model_hash:
        metadata[HASH_KEY] = model_hash
    weights = _weights_bytes(model, metadata)
    payload = {
        "format": FORMAT,
        HASH_KEY: model_hash,
        MANIFEST_KEY: True,
        "trainer": dict(trainer_state),
        "options": dict(options or {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    state = buf.getvalue()
    try:
        with contextlib.suppress(FileNotFoundError):
            this.manifest.unlink()  # a rewrite of this step is incomplete until its manifest
        atomic_write_bytes(this.weights, weights)
        atomic_write_bytes(this.state, state)
        atomic_write_bytes(
            this.manifest, _manifest(step, {this.weights.name: weights, this.state.name: state})
        )
    except BaseException:
        _remove(this)
        raise
    for old in _complete(out)[:-keep] if keep > 0 else []:
        if old.step != step:
            _remove(old)
    return this


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
    except FileNotFoundError:
        raise CheckpointError(f"{p.name} is missing") from None
    except OSError as exc:
        raise CheckpointError(
            f"cannot read checkpoint {p}: {(exc.strerror or str(exc)).lower()}"
        ) from None
    except Exception:  # a damaged file fails anywhere in torch's reader
        raise CheckpointError(
            f"cannot read checkpoint {p}: it is damaged or holds objects other than tensors "
            "and plain values"
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") not in (1, FORMAT)
        or not isinstance(payload.get("trainer"), dict)
    ):
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
    checkpoints, or a run folder (its final ``model.safetensors``, else its newest whole
    checkpoint).
    """
    p = Path(path)
    if p.is_file():
        if p.suffix not in (".safetensors", ".pt"):
            raise CheckpointError(
                f"{p} is not a weights file: give a .safetensors file, a checkpoint's .pt, "
                "a folder of checkpoints or a run folder"
            )
        return p.with_suffix(".safetensors") if p.suffix == ".pt" else p
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p / "model.safetensors"
        for folder in (p / "checkpoints", p):
            found = verified_checkpoint(folder)
            if found is not None:
                return found.weights
    raise CheckpointError(f"no checkpoint at {p}")


class Checkpointer(Callback):
    """Saves a checkpoint every ``every`` optimizer steps (if given) and at each epoch's end,
    keeping the ``keep`` newest (0: all)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        model_hash: str | None = None,
        every: int | None = None,
        keep: int = 2,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if every is not None and every < 0:
            raise ValueError(f"every must be >= 0 (0: only at epoch ends), got {every}")
        if keep < 0:
            raise ValueError(f"keep must be >= 0 (0: keep all), got {keep}")
        self.folder = Path(folder)
        self.options = dict(options or {})
        self.model_hash = model_hash
        self.every = every
        self.keep = keep
        self.last: Checkpoint | None = None

    def save(self, trainer: Trainer) -> Checkpoint | None:
        """Save a checkpoint (in several processes: all gather the state, rank 0 writes; a write
        that fails stops every process)."""
        state = trainer.state_dict()  # raises first if the loss went non-finite
        return trainer.strategy.agree(lambda: self._write(trainer, state))

    def _write(self, trainer: Trainer, state: Mapping[str, Any]) -> Checkpoint | None:
        if not trainer.strategy.is_main:
            return None
        try:
            self.last = save_checkpoint(
                self.folder,
                trainer.model,
                state,
                self.model_hash,
                keep=self.keep,
                options=self.options,
            )
        except OSError as exc:
            kept = (
                f"the checkpoint of step {self.last.step} and the earlier ones are kept"
                if self.last is not None
                else "earlier checkpoints, if any, are kept"
            )
            raise RunFolderError(
                f"{write_failure(exc, f'the checkpoint of step {trainer.step}')}: training "
                f"stopped; its partial files are removed and {kept}"
            ) from None
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

    def resume(
        self,
        trainer: Trainer,
        found: Checkpoint | None = None,
        on_skip: Callable[[str], object] | None = None,
    ) -> Checkpoint | None:
        """Load a checkpoint into ``trainer`` (weights and state): ``found``, else the newest
        whole one (``on_skip`` is told of each damaged one skipped); ``None`` if none."""
        if found is None:
            found = verified_checkpoint(self.folder, on_skip)
        if found is None:
            return None
        state = load_state(found.state, self.model_hash)
        check_world_size(found.state, state, trainer.world_size)
        load_weights(found.weights, trainer.model, self.model_hash)
        trainer.load_state_dict(state)
        self.last = found
        return found
