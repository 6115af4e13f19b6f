"""Run folders: the resolved spec, a record of the run, the metrics as CSV, curves, TensorBoard
events, a progress bar, the best and the final weights.

::

    runs/<spec name>-<timestamp>/
        spec.yaml          the spec as trained (with --set applied)
        run.json           versions, device, threads, seed, git commit, command, preprocessing,
                           best epoch, test results (see specnet._train.record)
        metrics.csv        one row per epoch: epoch, step, train_loss, <split>_loss,
                           <split>_<metric>, lr, seconds (split: val, or test without one)
        steps.csv          one row every log_every optimizer steps: epoch, step, train_loss, lr
        curves.png         loss and metric curves
        tensorboard/       event files, with train.loggers: [tensorboard]
        checkpoints/       see specnet._train.checkpoint
        best.safetensors   the weights of the epoch with the best monitored metric (best.json)
        model.safetensors  the final weights
        model.json         their manifest (size and sha256), checked when they are loaded

The CSV files are rewritten from the trainer's history when a run resumes, so a step is never
counted twice. :func:`train_run` trains a spec into a run folder, in this process or in the
processes torchrun started (rank 0 writes the folder).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from specnet._build.compiler import build_module
from specnet._front.errors import ErrorItem, SpecnetError, SpecValidationError, UsageError
from specnet._front.extras import is_weights_name, require, train_needs
from specnet._front.source import read_document
from specnet._front.spec import Spec
from specnet._front.trainspec import (
    COMPONENT_KEYS,
    Component,
    TrainSpec,
    dataset_args,
    default_monitor,
    evaluated_split,
    from_epochs,
    monitor_mismatch,
    monitor_mode,
    monitor_refused,
    registry_for,
)
from specnet._front.validate import validate_document

from .callbacks import BestWeights, TensorBoardLog
from .checkpoint import (
    Checkpoint,
    Checkpointer,
    check_world_size,
    clear_checkpoints,
    load_options,
    load_state,
    model_hash,
    save_weights,
    verified_checkpoint,
)
from .curves import Painter, _columns, plot_curves
from .data import (
    check_fits,
    data_error,
    embedding_size,
    load_dataset,
    model_output_shape,
    preprocessing,
    single_input,
)
from .distributed import Strategy, strategy_for
from .errors import (
    CheckpointError,
    Interrupted,
    NonFiniteLossError,
    RunFolderError,
    TrainingError,
)
from .files import atomic_write, write_failure
from .record import RUN_RECORD, read_record, start_record, write_record
from .trainer import Callback, Trainer, resolve_device, seed_everything
from .weights import load_initial_weights

__all__ = [
    "Progress",
    "RunLog",
    "RunResult",
    "check_folder",
    "check_resumable",
    "default_run_dir",
    "epoch_line",
    "resume_point",
    "summary_line",
    "train_run",
    "write_csv",
    "write_spec",
]


def default_run_dir(name: str | None, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a suffix if that folder exists."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name or 'run'}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def write_spec(path: str | os.PathLike[str], data: Mapping[str, Any], header: str = "") -> None:
    """The spec as YAML (``data`` as validated, e.g. with overrides applied)."""
    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)
    atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))


def _csv_text(
    rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None, *, header: bool = True
) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields or _columns(rows), lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite a CSV file with ``rows`` (atomically); columns in order of appearance."""
    text = _csv_text(rows)
    atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))


STEP_FIELDS = ("epoch", "step", "train_loss", "lr")


class RunLog(Callback):
    """Keeps ``metrics.csv``, ``steps.csv`` and ``curves.png`` of a run folder current."""

    def __init__(self, folder: str | os.PathLike[str], painter: Painter | None = None) -> None:
        self.folder = Path(folder)
        self.painter = painter
        """Draws curves.png (see :mod:`~specnet._train.curves`); None: in this process."""
        self._steps: io.TextIOWrapper | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        # Both files are rewritten from the trainer's state, so after a resume the rows
        # written past its checkpoint are gone.
        write_csv(self.folder / "metrics.csv", trainer.history)
        path = self.folder / "steps.csv"
        text = _csv_text(trainer.log, STEP_FIELDS)
        atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))
        self._close_steps()
        self._steps = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - kept open

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self._steps is not None:
            self._steps.write(_csv_text([row], STEP_FIELDS, header=False))
            self._steps.flush()

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        write_csv(self.folder / "metrics.csv", trainer.history)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.finish(trainer)

    def finish(self, trainer: Trainer) -> None:
        """Close the step log and draw the curves (also after training stopped early)."""
        self._close_steps()
        painter, self.painter = self.painter, None
        if not trainer.history:
            if painter is not None:
                painter.close()
        elif painter is not None:
            painter.draw(trainer.history, self.folder / "curves.png")
        else:
            plot_curves(trainer.history, self.folder / "curves.png")

    def close(self) -> None:
        """Close the step log, and stop the painter if the curves were not drawn."""
        self._close_steps()
        if self.painter is not None:
            self.painter.close()
            self.painter = None

    def _close_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        if "accuracy" in key:
            return f"{key} {100 * value:.2f}%"
        return f"{key} {value:.4g}"
    return f"{key} {value}"


def epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """``epoch 3/10  train_loss 0.123  val_loss 0.1  val_accuracy 97.50%  lr 0.001  (1.2 s)``."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    parts += [_fmt(k, v) for k, v in row.items() if k not in ("epoch", "step", "seconds")]
    return "  ".join(parts) + f"  ({row.get('seconds', 0.0):.1f} s)"


class Progress(Callback):
    """One tqdm bar for the whole run, with its ETA, the epoch, and the running training loss
    (the mean of the batches since the last refresh); a line per epoch above it.

    The losses are summed on the device; the sum is read (one device sync) only when the bar
    is refreshed, at most every ``refresh_seconds``, never once per batch. Off when the
    output is not a terminal (``tty=None``), unless ``tty`` says otherwise.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        file: Any = None,
        tty: bool | None = None,
        refresh_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        self.tty = tty
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._bar: Any = None
        self._sum: torch.Tensor | None = None
        self._batches = 0
        self._shown = 0.0
        self.reads = 0
        """How often the running loss was read from the device."""

    def on_fit_start(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        per_epoch = trainer.batches_per_epoch
        total = per_epoch * trainer.settings.epochs if per_epoch is not None else None
        done = trainer.epoch * per_epoch + trainer.batch_in_epoch if per_epoch else 0
        self._bar = tqdm(
            total=total,
            initial=done,
            unit="batch",
            leave=False,
            file=self.file,
            dynamic_ncols=True,
            disable=None if self.tty is None else not self.tty,
        )
        self._shown = self.clock()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch + 1}/{trainer.settings.epochs}", False)

    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        if self._bar is None or self._bar.disable:
            return
        self._sum = loss.float() if self._sum is None else self._sum + loss.float()
        self._batches += 1
        now = self.clock()
        if now - self._shown >= self.refresh_seconds:
            self.reads += 1
            self._bar.set_postfix(loss=f"{self._sum.item() / self._batches:.4g}", refresh=False)
            self._sum, self._batches, self._shown = None, 0, now
        self._bar.update(1)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        line = epoch_line(row, trainer.settings.epochs)
        if self._bar is not None and not self._bar.disable:
            self._bar.write(line, file=self.file)
        elif self.enabled:
            print(line, file=self.file, flush=True)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def summary_line(items: Iterable[tuple[str, Any]]) -> str:
    """``loss 0.1  accuracy 97.50%``."""
    return "  ".join(_fmt(k, v) for k, v in items)


@dataclass
class RunResult:
    """What :func:`train_run` did."""

    folder: Path
    trainer: Trainer
    test: dict[str, float] | None
    """The test split's loss and metrics after the last epoch (None without a test split)."""
    record: dict[str, Any]
    """What ``run.json`` holds (see :mod:`~specnet._train.record`)."""


@dataclass
class _Splits:
    train: Dataset[Any]
    val: Dataset[Any] | None
    test: Dataset[Any] | None

    @property
    def evaluated(self) -> tuple[str, Dataset[Any]] | None:
        """The split evaluated after each epoch (:func:`evaluated_split`) and its data."""
        given = {"val": self.val, "test": self.test}
        split = evaluated_split([k for k, v in given.items() if v is not None])
        data = given[split] if split is not None else None
        return (split, data) if split is not None and data is not None else None


def _data_for(spec: Spec, model: nn.Module) -> _Splits:
    t = spec.train
    if t is None or t.data is None:
        raise data_error(
            "nothing to train on: add 'train: {data: ...}' (e.g. data: Digits)",
            spec.source,
            ("train",) if t is not None else (),
        )
    tensor_spec = single_input(spec)
    out_shape: tuple[int, ...] = ()
    if t.data.type == "Synthetic":
        out_shape = model_output_shape(model, tensor_spec)
        classes = dataset_args(t.data)["classes"]
        if classes is not None and (not out_shape or out_shape[0] < classes):
            raise data_error(
                f"Synthetic: {classes} classes, but the model's output per sample is "
                f"{list(out_shape)}, not [{classes}] class scores; set 'classes' "
                "(null for regression targets shaped like the output)",
                spec.source,
            )
    kwargs: dict[str, Any] = {
        "input": tensor_spec,
        "output_shape": out_shape,
        "seed": t.seed,
        "int_high": embedding_size(model),
        "source": spec.source,
    }
    train = load_dataset(t.data, "train", **kwargs)
    if train is None:
        raise data_error(f"{t.data.type} has no training data", spec.source)
    splits = _Splits(
        train, load_dataset(t.data, "val", **kwargs), load_dataset(t.data, "test", **kwargs)
    )
    for name in ("train", "val", "test"):
        data = getattr(splits, name)
        if data is not None:
            check_fits(data, f"{t.data.type} ({name} split)", spec.inputs, spec.source)
    return splits


RUN_FILES = (
    "spec.yaml",
    RUN_RECORD,
    "metrics.csv",
    "steps.csv",
    "curves.png",
    "model.safetensors",
    "model.json",
    "best.safetensors",
    "best.json",
)
TENSORBOARD = "tensorboard"
"""The run folder's folder of TensorBoard event files (``train.loggers: [tensorboard]``)."""


def _clear(folder: Path) -> None:
    """Remove a previous run's files from ``folder`` (a fresh run there replaces it)."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / TENSORBOARD, ignore_errors=True)
    clear_checkpoints(folder / "checkpoints")


RUN_DEFAULTS: dict[str, int] = {"checkpoint_every": 200, "keep": 2, "log_every": 50}
"""Run settings when neither the command line nor a resumed run's checkpoint gives them."""


def resume_point(
    folder: str | os.PathLike[str], on_skip: Callable[[str], object] | None = None
) -> Checkpoint:
    """The checkpoint a run in ``folder`` resumes from: its newest whole one (``on_skip`` is
    told of each newer, damaged one skipped, naming the bad file)."""
    where = Path(folder) / "checkpoints"
    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        if on_skip is not None:
            on_skip(message)

    found = verified_checkpoint(where, skip)
    if found is None:
        why = f" ({len(skipped)} damaged: see above)" if skipped and on_skip else ""
        if skipped and not on_skip:
            why = f" ({'; '.join(skipped)})"
        raise CheckpointError(f"nothing to resume: no whole checkpoint in {where}{why}")
    return found


def check_resumable(folder: str | os.PathLike[str], world_size: int) -> None:
    """Refuse, before starting any process, to resume the run in ``folder`` in another number
    of processes than trained it."""
    found = resume_point(folder)
    check_world_size(found.state, load_state(found.state), world_size)


def _weights_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_folder(out: Path, *, need: int = 0) -> None:
    """Refuse, before training, a run folder that cannot hold the run: a file, under a file,
    not writable (a read-only file system), or with less than ``need`` bytes free.

    Creates nothing that stays: a missing folder is tested through its nearest existing parent.
    """
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"the run folder {out} is a file, not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise RunFolderError(f"cannot create the run folder {out}: {existing} is a file")
    probe = existing / f".specnet-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(
            f"cannot write the run folder {out}: {(exc.strerror or str(exc)).lower()} ({existing})"
        ) from None
    free = shutil.disk_usage(existing).free
    if free < need:
        raise RunFolderError(
            f"no space left on device for the run folder {out}: {free / 2**20:.1f} MiB free, and "
            f"its checkpoints and final weights need at least {need / 2**20:.1f} MiB"
        )


_RESUME_KEYS = ("command", "started", "git", "specnet", "torch")
"""What run.json keeps of the run's start when it resumes (each resume is listed apart)."""


class _Record(Callback):
    """Writes ``run.json`` when training starts (the thread count is chosen by then)."""

    def __init__(self, folder: Path, record: dict[str, Any]) -> None:
        self.folder = folder
        self.record = record

    def on_fit_start(self, trainer: Trainer) -> None:
        self.record["threads"] = trainer.state.threads
        if trainer.thread_steps:  # measured now (a resumed run keeps its start's)
            self.record["thread_step_ms"] = {
                str(n): round(1000 * seconds, 3) for n, seconds in trainer.thread_steps.items()
            }
        self.record.setdefault("thread_step_ms", None)
        write_record(self.folder, self.record)


class _StopOnSignal(Callback):
    """Ends a single-process run on SIGTERM: at the next optimizer step, with a checkpoint.

    Before training starts (loading data, say) the signal stops the run at once.
    """

    def __init__(self, checkpointer: Checkpointer, folder: Path) -> None:
        self.checkpointer = checkpointer
        self.folder = folder
        self.received: int | None = None
        self.armed = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if not self.armed:
            raise Interrupted(f"stopped by {signal.Signals(signum).name} before training started")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.armed = True

    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        if self.received is None or not trainer.at_step_boundary:
            return
        last = self.checkpointer.last
        if last is None or last.step != trainer.step:
            last = self.checkpointer.save(trainer)
        name = signal.Signals(self.received).name
        saved = f"the checkpoint of step {last.step} is saved" if last else "no checkpoint is saved"
        raise Interrupted(
            f"stopped by {name} at optimizer step {trainer.step} (epoch {trainer.epoch + 1}); "
            f"{saved}: continue with 'specnet train --resume {self.folder}'"
        )


@contextlib.contextmanager
def _joined(strategy: Strategy) -> Iterator[None]:
    """The processes of a run: left together at its end; after an error a user can cause,
    which every process meets (they agree on verdicts), left together once it is reported
    (:func:`~specnet._train.distributed.leave`, at the latest when the process exits); left at
    once after any other error, for torchrun to stop the others."""
    try:
        yield
    except SpecnetError:
        raise
    except BaseException as exc:
        strategy.close(together=False)
        if strategy.world_size > 1 and _peer_lost(exc):
            raise TrainingError(
                "lost the connection to another process of the run (it stopped, or its machine "
                "did): this process stops too; once every machine is back, 'specnet train "
                "--resume RUN_FOLDER' continues from the last checkpoint"
            ) from None
        raise
    strategy.close(together=True)


def _peer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective call failing because another process went away."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "gloo" in text.lower() or "NCCL" in text or "by peer" in text
    )


def train_run(
    spec: Spec,
    folder: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    checkpoint_every: int | None = None,
    keep: int | None = None,
    log_every: int | None = None,
    progress: bool = True,
    command: str = "",
) -> RunResult:
    """Train ``spec`` into a run folder (see the module's docstring), or resume the run there.

    ``folder`` defaults to ``runs/<spec name>-<timestamp>``. Started by torchrun, the processes
    train together (rank 0 names the folder, writes it and shows progress) and leave the
    process group at the end. The data is loaded and checked against the spec's input before
    the first step. A loss that is not finite stops the run with :class:`NonFiniteLossError`;
    the checkpoints written before it stay. Resuming continues from the newest checkpoint to
    the same weights an uninterrupted run reaches, with the run's settings
    (``checkpoint_every``, ``keep``, ``log_every``) unless given again; ``0`` turns step
    checkpoints or step logs off. A package the run would import (the data set's, safetensors,
    matplotlib, tqdm with ``progress``) that is not installed raises
    :class:`~specnet._front.errors.MissingDependency` before anything is done.
    """
    if resume and folder is None:
        raise UsageError("resuming a run needs its folder")
    require(train_needs(spec.train, progress=progress), "training")
    t = spec.train if spec.train is not None else TrainSpec.model_validate({})
    strategy = strategy_for(resolve_device(t.device, spec.source))
    with _joined(strategy):
        if folder is None:  # rank 0 names it for all
            stem = Path(spec.source.file).stem if spec.source.file else None
            name = default_run_dir(spec.name or stem) if strategy.is_main else None
            folder = strategy.broadcast(name)
        assert folder is not None
        given = {"checkpoint_every": checkpoint_every, "keep": keep, "log_every": log_every}
        # Imports matplotlib while this process starts; stopped if the curves are never due.
        painter = Painter() if strategy.is_main else None
        try:
            return _run(painter, spec, Path(folder), strategy, resume, given, progress, command)
        finally:
            if painter is not None:
                painter.close()


def _reporter(strategy: Strategy) -> Callable[[str], None] | None:
    """Prints a note to stderr in rank 0 alone."""
    if not strategy.is_main:
        return None
    return lambda message: print(f"specnet train: {message}", file=sys.stderr, flush=True)


def _under(filename: object, folder: Path) -> bool:
    if not isinstance(filename, (str, os.PathLike)):
        return False
    try:
        Path(filename).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _writing(out: Path, write: Callable[[], object]) -> None:
    """``write()``, with a failure to write the run folder (a full disk) as a plain message."""
    try:
        write()
    except OSError as exc:
        raise RunFolderError(write_failure(exc, f"the run folder {out}")) from None


def _start_folder(out: Path, spec: Spec, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_spec(
        out / "spec.yaml",
        _resolved_paths(spec),
        header=f"Resolved spec of this run.\n{command}".strip(),
    )


def _resolved_paths(spec: Spec) -> dict[str, Any]:
    """``spec.data`` with a relative ``train.init_from`` file made absolute (it is relative to
    the spec's folder, which the run folder's spec.yaml is not in)."""
    data = dict(spec.data)
    train = data.get("train")
    init_from = train.get("init_from") if isinstance(train, Mapping) else None
    if not isinstance(train, Mapping) or not isinstance(init_from, str):
        return data
    if is_weights_name(init_from) or Path(os.path.expanduser(init_from)).is_absolute():
        return data
    folder = Path(spec.source.file).parent if spec.source.file else Path()
    data["train"] = {**train, "init_from": str((folder / init_from).resolve())}
    return data


RESUME_MAY_CHANGE = ("epochs", "loggers", "init_from", "early_stopping", "min_delta")
"""The ``train:`` settings a resumed run may change: more epochs (to train longer, unless the
schedule's length follows them), other loggers, ``init_from`` (a resumed run reads its
checkpoint) and when it stops early; and the data set's ``root`` and ``download`` (where its
files are, not what they hold). Any other change would not continue the run: another seed or
split of the data, batch, optimizer, schedule or thread count."""

_DATA_MAY_CHANGE = ("root", "download")


def _kept(t: TrainSpec, monitor: str) -> dict[str, Any]:
    """What of ``t`` a resume must keep, as it takes effect: each component with its defaults
    (and the arguments the run fills in from ``epochs``), the device as resolved, the mode of
    the run's ``monitor``."""
    out = t.model_dump()
    for key in COMPONENT_KEYS:
        c = getattr(t, key)
        described = registry_for(key).get(c.type) if isinstance(c, Component) else None
        if c is None or described is None:
            continue
        args = described.with_defaults(c.args)
        if key == "schedule":  # T_max or OneCycleLR's cycle: the epochs of this spec
            args.update(from_epochs(c, t.epochs))
        if key == "data":
            args = {k: v for k, v in args.items() if k not in _DATA_MAY_CHANGE}
        out[key] = {"type": c.type, "args": args}
    with contextlib.suppress(SpecnetError):  # a device not on this machine: as written
        out["device"] = str(resolve_device(t.device))
    out["mode"] = monitor_mode(t, monitor)
    return out


TRAIN_RECORD = "train"
"""The key of a checkpoint's options that holds the ``train:`` settings it was trained with
(``TrainSpec.model_dump()``: plain values, an infinite ``clip_grad_norm`` as it is): what a
resume is compared against, since the run folder's ``spec.yaml`` (which ``--resume DIR``
reads) may have been edited since."""


def _resume_problems(
    out: Path, spec: Spec, state: Mapping[str, Any], recorded: Mapping[str, Any] | None
) -> list[ErrorItem]:
    """How ``spec`` differs from the run being resumed in ``out`` in what a resume must keep,
    each located in ``spec``; and too few epochs for what the run has done (its checkpoint's
    ``state``). The run's settings are those its checkpoint ``recorded``; a checkpoint of an
    earlier release has none, and its run folder's ``spec.yaml`` stands in."""
    t = spec.train if spec.train is not None else TrainSpec.model_validate({})
    problems = []
    done = int(state.get("epoch", 0)) + (1 if state.get("batch_in_epoch") else 0)
    if t.epochs < done:
        problems.append(
            spec.source.error(
                ("train", "epochs"),
                f"the run being resumed has trained {done} epoch{'s' * (done != 1)}: epochs "
                f"{t.epochs} would end it before where it is; give at least {done} (more to "
                "train longer)",
                kind="value",
            )
        )
    before = _trained_with(out, recorded)
    if before is None:
        return problems
    monitor = str(state.get("monitor") or "val_loss")
    old, new = _kept(before, monitor), _kept(t, monitor)
    fix = (
        "a resumed run continues the run exactly, so only "
        + ", ".join(RESUME_MAY_CHANGE)
        + f" may change; for other settings start a new run (train.init_from: "
        f"{out / 'model.safetensors'} starts from its last weights)"
    )
    apart = ("monitor",)  # compared as the column monitored: monitor_mismatch
    for key in (k for k in new if k not in (*RESUME_MAY_CHANGE, *apart) and old.get(k) != new[k]):
        follows = (
            " (its length follows train.epochs)"
            if key == "schedule" and t.schedule is not None and from_epochs(t.schedule, t.epochs)
            else ""
        )
        problems.append(
            spec.source.error(
                ("train", key),
                f"the run being resumed has {key} {_shown(old.get(key))}, this spec "
                f"{_shown(new[key])}{follows}: {fix}",
                kind="value",
            )
        )
    return problems


def _trained_with(out: Path, recorded: Mapping[str, Any] | None) -> TrainSpec | None:
    """The ``train:`` settings of the run in ``out``: as its checkpoint ``recorded`` them, else
    as its ``spec.yaml`` gives them; None when neither can be read (the model hash decides)."""
    if recorded is not None:
        with contextlib.suppress(ValueError):  # pydantic's error: written by another release
            return TrainSpec.model_validate(recorded)
    path = out / "spec.yaml"
    if not path.is_file():
        return None
    try:
        before = validate_document(read_document(path)).train
    except (SpecnetError, OSError):
        return None
    return before if before is not None else TrainSpec.model_validate({})


def _shown(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) == {"type", "args"}:
        value = {"type": value["type"], **value["args"]}
    return json.dumps(value, default=str)


def _run(
    painter: Painter | None,
    spec: Spec,
    out: Path,
    strategy: Strategy,
    resume: bool,
    given: Mapping[str, int | None],
    progress: bool,
    command: str,
) -> RunResult:
    main = strategy.is_main
    report = _reporter(strategy)
    point = strategy.agree(lambda: resume_point(out, report) if resume else None)
    options = dict(RUN_DEFAULTS)
    if point is not None:
        saved = load_options(point.state)
        recorded = saved.pop(TRAIN_RECORD, None)
        changed = _resume_problems(out, spec, load_state(point.state), recorded)
        if changed:  # before anything is built, read or written
            raise SpecValidationError(changed)
        options.update(saved)
    options.update({k: v for k, v in given.items() if v is not None})

    t = spec.train if spec.train is not None else TrainSpec.model_validate({})
    seed_everything(t.seed)
    model = build_module(spec, strategy.device)
    if point is None and t.init_from is not None:
        load_initial_weights(model, t.init_from, spec)
    # Rank 0 writes the folder: its verdict, before any data is read.
    # While a checkpoint is written the kept ones stay; then the final weights.
    need = _weights_bytes(model) * ((options["keep"] or 2) + 3)
    strategy.agree(lambda: check_folder(out, need=need) if main else None)
    splits = strategy.in_turn(lambda: _data_for(spec, model))
    evaluated = splits.evaluated
    problem = monitor_refused(t, evaluated[0] if evaluated is not None else None)
    if problem is not None:  # before the folder is touched
        raise SpecValidationError([spec.source.error(("train", "monitor"), problem, kind="value")])
    digest = model_hash(spec.data)
    checkpointer = Checkpointer(
        out / "checkpoints",
        model_hash=digest,
        every=options["checkpoint_every"],
        keep=options["keep"],
        options={**options, TRAIN_RECORD: t.model_dump()},
    )
    # In several processes, rank 0 alone shows progress and writes the run folder.
    bar = Progress(enabled=progress and main)
    run_log = RunLog(out, painter)
    record = start_record(
        command=command,
        spec_file=spec.source.file,
        device=strategy.device,
        world_size=strategy.world_size,
        seed=t.seed,
        preprocess=preprocessing(t.data, t.seed),
    )
    record["evaluated"] = evaluated[0] if evaluated is not None else None
    earlier = read_record(out) if point is not None else None
    if earlier is not None:  # a resume: the run's start, and each resume after it
        resumed = [*earlier.get("resumed", []), {k: record[k] for k in _RESUME_KEYS}]
        record.update({k: earlier.get(k, record[k]) for k in _RESUME_KEYS}, resumed=resumed)
        record["thread_step_ms"] = earlier.get("thread_step_ms")  # the count's measurement
    writers: list[object] = [bar, run_log, _Record(out, record)]
    board = TensorBoardLog(out / TENSORBOARD) if "tensorboard" in t.loggers else None
    if board is not None:
        writers.append(board)
    if evaluated is not None:  # before the checkpointer: a state never names a best not saved
        writers.append(BestWeights(out / "best.safetensors", digest))
    # SIGTERM in one process: a checkpoint and a message. Under torchrun the launcher stops
    # the processes itself (and says so).
    stop = _StopOnSignal(checkpointer, out) if strategy.world_size == 1 else None
    callbacks: list[object] = [*writers, checkpointer] if main else [checkpointer]
    trainer = Trainer.from_spec(
        spec,
        model=model,
        strategy=strategy,
        callbacks=[*callbacks, stop] if stop is not None else callbacks,
        log_every=options["log_every"],
    )
    if stop is not None:
        stop.install()
    try:
        if point is not None:
            checkpointer.resume(trainer, point)
            split = evaluated[0] if evaluated is not None else None
            mismatch = monitor_mismatch(trainer.state.monitor, default_monitor(t, split))
            if mismatch is not None:  # before spec.yaml is rewritten
                raise SpecValidationError(
                    [spec.source.error(("train", "monitor"), mismatch, kind="value")]
                )
        elif main:
            _writing(out, lambda: _clear(out))
        if main:
            _writing(out, lambda: _start_folder(out, spec, command))
        started = time.perf_counter()
        if evaluated is not None:
            trainer.fit(splits.train, evaluated[1], val_name=evaluated[0])
        else:
            trainer.fit(splits.train)
        record["train_seconds"] = round(time.perf_counter() - started, 3)
    except NonFiniteLossError as exc:
        bar.close()
        if main:
            run_log.finish(trainer)
        last = checkpointer.last
        kept = (
            f"the last good checkpoint is {last.weights}" if last else "no checkpoint was written"
        )
        raise NonFiniteLossError(f"{exc}; {kept}") from None
    except OSError as exc:
        if not _under(exc.filename, out):
            raise
        raise RunFolderError(write_failure(exc, f"the run folder {out}")) from None
    finally:
        if stop is not None:
            stop.uninstall()
        bar.close()
        run_log.close()
        if board is not None:
            board.close()
    if main:
        _writing(out, lambda: save_weights(out / "model.safetensors", model, digest))
    final = trainer.history[-1] if trainer.history else {}
    results: dict[str, float] = {}
    if evaluated is not None and evaluated[0] == "test":
        results = {k.removeprefix("test_"): v for k, v in final.items() if k.startswith("test_")}
    if splits.test is not None and not results:
        results = trainer.evaluate(splits.test)
    st = trainer.state
    record.update(
        threads=st.threads,
        monitor=trainer.monitor,
        mode=monitor_mode(t, trainer.monitor),
        best=(
            {"epoch": st.best_epoch, "value": st.best, "weights": "best.safetensors"}
            if evaluated is not None and st.best is not None
            else None
        ),
        stopped_early=st.stopped_early,
        epochs=st.epoch,
        test=results or None,
    )
    if painter is not None:  # curves.png, drawn meanwhile by the painter
        _writing(out, painter.finish)
    if main:  # last: a run.json says the run is complete
        _writing(out, lambda: write_record(out, record))
    return RunResult(out, trainer, results or None, record)
