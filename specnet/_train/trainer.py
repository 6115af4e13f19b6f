"""``specnet.Trainer``: the training loop of the PyTorch tutorials, for any ``nn.Module``.

The loop is the tutorials' own (forward, loss, backward, optimizer step, zero the gradients),
with what they leave to the reader: mixed precision, gradient accumulation and clipping, a
learning-rate schedule, metrics, and state that checkpoints can save and restore exactly.
Losses are accumulated on the device; the host waits for the device only every ``log_every``
optimizer steps, at checkpoints and at the end of an epoch, never once per batch.

Callbacks are objects with any of these methods, called in this order::

    on_fit_start(trainer)
    for each epoch:
        on_epoch_start(trainer, epoch)          epoch counts from 0
        for each batch:                         forward, loss, backward; an optimizer step
                                                every grad_accum_steps batches
            on_batch_end(trainer, loss)         loss: detached, still on the device
            on_log(trainer, row)                every log_every optimizer steps: {epoch, step,
                                                train_loss (mean since the last row), lr}
        (validation on val_data, then the schedule's per-epoch step)
        on_epoch_end(trainer, row)              row: the epoch's entry in trainer.history
    on_fit_end(trainer)

Plain functions can be added with :meth:`Trainer.on`. A loss that is not finite stops
training with :class:`NonFiniteLossError` (a :class:`FloatingPointError`) at the next point the
loss is read (a log row, a checkpoint, the epoch's end), before any state is saved.

The counters that a checkpoint saves are one :class:`TrainerState`; what the trainer does in
one process or in several is its :class:`~specnet._train.distributed.Strategy`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, cast

import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate

from specnet._front.errors import Path, SpecValidationError, did_you_mean
from specnet._front.registry import Registry, losses, optimizers, schedulers
from specnet._front.spec import TensorSpec
from specnet._front.trainspec import (
    METRICS,
    Component,
    TrainSpec,
    default_monitor,
    from_epochs,
    monitor_mismatch,
    monitor_mode,
    monitor_refused,
    setting_problem,
)

from . import threads
from .distributed import BatchOrder, Strategy, strategy_for, world_size_mismatch
from .errors import NonFiniteLossError, TrainingError

if TYPE_CHECKING:
    from specnet._front.source import SourceMap
    from specnet._front.spec import Spec

__all__ = ["HOOKS", "Callback", "Trainer", "TrainerState", "resolve_device", "seed_everything"]

HOOKS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_end",
    "on_log",
    "on_epoch_end",
    "on_fit_end",
)
"""Hook names, in the order they are first called."""

ComponentLike = str | Mapping[str, Any] | Component
"""A loss, optimizer or schedule by name: ``"SGD"``, ``{"type": "SGD", "lr": 0.1}``."""
LossObject = nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerObject = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
ScheduleObject = torch.optim.lr_scheduler.LRScheduler | Callable[..., Any]
"""A scheduler, or a function of the optimizer returning one."""
DataLike = Dataset[Any] | DataLoader[Any] | Iterable[Any]


def _map_style(data: object) -> TypeGuard[Dataset[Any]]:
    """Whether ``data`` is a sized map-style ``Dataset``: the trainer orders, shards and
    batches its samples by index (and resumes part-way through an epoch)."""
    return (
        isinstance(data, Dataset)
        and not isinstance(data, IterableDataset)
        and hasattr(data, "__len__")
    )


_OBJECTS = ("loss", "optimizer", "schedule")
"""Settings that may also be given as torch objects, not by name."""

_COMPONENTS = ("optimizer", "scheduler", "scaler")
"""The trainer's torch objects whose own state_dict is part of the trainer's."""


class Callback:
    """Base class for callbacks: every hook, doing nothing. Override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None: ...
    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...


class _Hook(Protocol):
    def __call__(self, trainer: Trainer, /, *args: Any) -> None: ...


@dataclass
class TrainerState:
    """Where training is: every counter that must survive a restart.

    Its fields are the checkpoint's schema: :meth:`state_dict` and :meth:`load_state_dict`
    follow them, so a new field is saved and restored with the others.
    """

    world_size: int = 1
    """The processes that trained together; a run resumes in as many."""
    epoch: int = 0
    """Epochs completed (while training: the index of the current epoch)."""
    batch_in_epoch: int = 0
    """Batches done in the current epoch."""
    step: int = 0
    """Optimizer steps done."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per epoch: epoch, step, train_loss, val_loss, val_<metric>..., lr, seconds."""
    log: list[dict[str, Any]] = field(default_factory=list)
    """One row every ``log_every`` optimizer steps: epoch, step, train_loss, lr."""
    epoch_loss: float = 0.0
    """The sum of the batches' training losses read so far in this epoch..."""
    epoch_batches: int = 0
    """... and how many batches it sums."""
    interval_loss: float = 0.0
    """The same since the last log row..."""
    interval_batches: int = 0
    """... and its batches."""
    data_seed: int | None = None
    """The seed of the data order (with the epoch); None until training starts."""
    epoch_seconds: float = 0.0
    """Seconds spent in the current epoch when the state was taken."""
    rng_per_rank: list[dict[str, Any]] = field(default_factory=list)
    """Every process's random states when the state was taken, in rank order."""
    threads: int | None = None
    """The CPU threads training uses (chosen once, when training starts: see
    :mod:`~specnet._train.threads`); None until then, or when not training on the CPU."""
    monitor: str | None = None
    """The column whose best value :attr:`best` is (a resumed run must monitor the same)."""
    best: float | None = None
    """The monitored metric's best value so far (``settings.monitor``)..."""
    best_epoch: int = 0
    """... and the epoch (counting from 1) that reached it."""
    stopped_early: bool = False
    """Whether early stopping ended training."""

    def state_dict(self) -> dict[str, Any]:
        """The fields, by name (a deep copy)."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set every field from ``state`` (as :meth:`state_dict` gives it)."""
        for f in dataclasses.fields(self):
            if f.name in state:
                setattr(self, f.name, copy.deepcopy(state[f.name]))
            elif f.name == "threads":  # a run from before the count was chosen: torch's
                self.threads = torch.get_num_threads()
            else:  # a state saved before the field existed
                default = f.default_factory() if callable(f.default_factory) else f.default
                setattr(self, f.name, default)


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` (None: left alone), restored afterwards."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    if count == before:  # setting it anew would still clear torch's cached kernels
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device, source: SourceMap | None = None) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; anything else is checked to be there:
    a device this machine lacks (``cuda`` without CUDA, ``cuda:3`` of two GPUs, ``mps``) is
    refused before anything is built, with a :class:`SpecValidationError` at ``train.device``
    when ``source`` locates it, else a :class:`TrainingError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):  # e.g. 'cuda:01', 'banana'
        problem: str | None = "torch reads no device from it"
    else:
        problem = _missing_device(resolved)
        if problem is None:
            return resolved
    message = f"device '{device}': {problem}; use 'auto' (CUDA when present) or 'cpu'"
    if source is not None:
        raise SpecValidationError([source.error(("train", "device"), message, kind="value")])
    raise TrainingError(message)


def _missing_device(device: torch.device) -> str | None:
    """Why ``device`` is not on this machine (None when it is)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "" if torch.backends.cuda.is_built() else " (this torch is built without it)"  # type: ignore[no-untyped-call]
            return f"this machine has no CUDA device{built}"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device{'s' * (count != 1)}: cuda:0 to cuda:{count - 1}"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return "this machine has no Apple GPU (MPS)"
    return None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random number generators."""
    random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with the train extra
        return
    np.random.seed(seed % 2**32)


def _component(value: ComponentLike) -> Component:
    if isinstance(value, Component):
        return value
    if isinstance(value, str):
        return Component(type=value)
    args = dict(value)
    kind = args.pop("type", None)
    if not isinstance(kind, str):
        raise TrainingError(f"expected a mapping with a 'type' name, got {dict(value)!r}")
    return Component(type=kind, args=args)


def _named(value: object) -> bool:
    """Whether a loss, optimizer or schedule is given by name (not as a torch object)."""
    return isinstance(value, (str, Mapping, Component))


def _settings(given: Mapping[str, Any]) -> TrainSpec:
    """The :class:`TrainSpec` of the keyword settings ``given`` (its defaults for the others)."""
    unknown = [k for k in given if k not in TrainSpec.model_fields or k == "data"]
    if unknown:
        names = [k for k in TrainSpec.model_fields if k != "data"]
        raise TypeError(
            f"Trainer() got an unexpected keyword argument '{unknown[0]}'"
            + did_you_mean(unknown[0], names)
        )
    values = {
        k: (_component(v) if k in _OBJECTS and v is not None else v) for k, v in given.items()
    }
    if isinstance(values.get("device"), torch.device):
        values["device"] = str(values["device"])
    try:
        return TrainSpec.model_validate(values, strict=False)
    except ValidationError as exc:
        problems = []  # in the words of a spec's train: section (one wording for both)
        for e in exc.errors(include_url=False):
            where, msg = setting_problem(e)
            problems.append(f"{'.'.join(map(str, where))}: {msg}")
        raise TrainingError("; ".join(problems)) from None


class _DeviceBatches:
    """A data set held whole on the training device, batched by indexing there.

    For small data sets on a GPU (``data_on_device``): one copy at the start instead of one per
    batch, the samples read (and transformed) once. A :class:`TensorDataset` already on the
    device (the in-memory data sets on the CPU) is batched so too: ``tensors[indices]`` gives
    the values a DataLoader's per-sample reads and ``default_collate`` give, without them.
    """

    def __init__(self, data: Dataset[Any], order: BatchOrder, device: torch.device):
        self.batch_sampler = order
        if _plain_tensors(data):
            columns: Any = data.tensors
        else:
            columns = default_collate([data[i] for i in range(order.n)])
        self.columns = _move(columns, device)
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        order = self.batch_sampler.order().to(self.device)  # one copy an epoch
        for start, end in self.batch_sampler.spans():
            yield _take(self.columns, order[start:end])

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _plain_tensors(data: object) -> TypeGuard[TensorDataset]:
    """Whether ``data`` is a TensorDataset whose samples are its tensors' rows: not a subclass
    that reads them its own way."""
    kind = type(data)
    return isinstance(data, TensorDataset) and all(
        getattr(kind, name, None) is getattr(TensorDataset, name, None)
        for name in ("__getitem__", "__getitems__")
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are one device: without an index, ``cuda`` is the current GPU
    (``cuda:0`` when that is current) and other types their first device."""

    def index(d: torch.device) -> int:
        given: int | None = d.index  # None when not given (torch's stubs say int)
        if given is not None:
            return given
        return torch.cuda.current_device() if d.type == "cuda" else 0

    return a.type == b.type and index(a) == index(b)


def _take(value: Any, index: torch.Tensor) -> Any:
    return _map_tensors(value, lambda t: t[index], other=_not_on_device)


def _not_on_device(value: Any) -> Any:
    raise TrainingError(
        f"data_on_device keeps tensors on the device, and these samples hold a "
        f"{type(value).__name__}"
    )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if _cuda_initialized() else [],
    }
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return state
    kind, key, pos, has_gauss, gauss = cast(tuple[Any, ...], np.random.get_state())
    state["numpy"] = (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)
    return state


def _cuda_initialized() -> bool:
    return bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, key, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or tuples, lists and mappings of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _map_tensors(
    value: Any, fn: Callable[[torch.Tensor], Any], other: Callable[[Any], Any] = lambda v: v
) -> Any:
    """``fn`` applied to the tensors of a batch (nested tuples, lists and mappings), ``other``
    to anything else."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn, other) for v in value)
    if isinstance(value, Mapping):
        return {k: _map_tensors(v, fn, other) for k, v in value.items()}
    return other(value)


def _move(value: Any, device: torch.device) -> Any:
    return _map_tensors(value, lambda t: t.to(device, non_blocking=True))


_REHEARSED_STEPS = 20_000
"""At most this many schedule steps are rehearsed before training."""


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _all_targets(data: Dataset[Any]) -> torch.Tensor | None:
    """Every target of ``data``, when it keeps them apart (a TensorDataset, torchvision's
    ``targets``/``labels``), without reading the samples."""
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return data.tensors[1]
    for name in ("targets", "labels"):
        found = getattr(data, name, None)
        if isinstance(found, torch.Tensor):
            return found
        if isinstance(found, list) and found and all(isinstance(v, int) for v in found):
            return torch.tensor(found)
    return None


def _stepping_of(scheduler: object) -> str:
    """When ``scheduler`` steps: its registry entry's ``stepping`` (that of the torch class it
    derives from); once an epoch for others."""
    for cls in type(scheduler).__mro__:
        t = schedulers().get(cls.__name__)
        if t is not None and t.build_target() is cls:
            return t.stepping or "epoch"
    return "epoch"


class Trainer:
    """Trains, evaluates and runs any ``nn.Module``.

    The keyword ``settings`` are the fields of :class:`~specnet.TrainSpec` (a spec's ``train:``
    section, but ``data``: the data is :meth:`fit`'s), with its defaults: ``epochs``,
    ``batch_size``, ``metrics``, ``precision``, ... :attr:`settings` holds them. ``loss``,
    ``optimizer`` and ``schedule`` take torch names (``"CrossEntropyLoss"``,
    ``{"type": "SGD", "lr": 0.01, "momentum": 0.9}``) or torch objects: a loss module or
    function, an optimizer or a function of the parameters returning one, a scheduler or a
    function of the optimizer returning one (these replace the ones :attr:`settings` names).
    ``device`` may be a ``torch.device``; ``seed=None`` leaves the random state to the caller.
    ``inputs`` (a spec's input shapes) lets :meth:`fit` check that the data fits the model
    before the first step; ``source`` (the spec's positions) locates errors about settings;
    ``data_name`` names the data in messages (``"TensorFile"``: "TensorFile (train split)").

    Batches are ``(input, target)`` pairs; an input that is a tuple or a mapping is passed as
    positional or keyword arguments. ``fit`` and ``evaluate`` take a ``Dataset`` (batched by
    the trainer, shuffled with the seed for training), an ``IterableDataset`` (batched in its
    order), a ``DataLoader`` or any iterable of batches; only a map-style ``Dataset`` resumes
    mid-epoch in the same order.

    ``callbacks`` are objects with any of the methods in :data:`HOOKS` (see :class:`Callback`
    and this module's docstring for the order); :meth:`on` adds plain functions.
    :meth:`state_dict` and :meth:`load_state_dict` save and restore everything but the
    weights (:class:`TrainerState`, the optimizer's, the schedule's and the scaler's states),
    random states and the data order included.

    ``strategy`` (default: from the environment, see :func:`~specnet._train.distributed.strategy_for`)
    is how the trainer runs in one process or in several. Started by torchrun (``WORLD_SIZE``
    > 1), the trainer joins the process group, trains through ``DistributedDataParallel`` with
    ``batch_size`` as the global batch, reduces losses and metrics across the processes, and
    gathers every process's random state into :meth:`state_dict`. Callbacks run in every
    process; :attr:`rank` tells them apart.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        callbacks: Sequence[object] = (),
        log_every: int = 50,
        num_workers: int = 0,
        deterministic: bool = True,
        inputs: Mapping[str, TensorSpec] | None = None,
        source: SourceMap | None = None,
        strategy: Strategy | None = None,
        data_name: str | None = None,
        **settings: Any,
    ) -> None:
        objects: dict[str, Any] = {}  # the loss, optimizer and schedule given as torch objects
        for k in _OBJECTS:
            if k != "schedule" and k in settings and settings[k] is None:
                del settings[k]  # None: the default loss or optimizer
            elif settings.get(k) is not None and not _named(settings[k]):
                objects[k] = settings.pop(k)
        self._seeded = settings.get("seed", 0) is not None
        if not self._seeded:
            del settings["seed"]
        self.settings: TrainSpec = _settings(settings)
        """The settings (loss, optimizer and schedule: unless given as torch objects)."""
        self.source = source
        s = self.settings
        self.strategy = (
            strategy if strategy is not None else strategy_for(resolve_device(s.device, source))
        )
        if s.batch_size < self.world_size:
            raise self._error(
                "batch_size",
                f"batch_size is the global batch, shared by the {self.world_size} processes; "
                f"it must be at least {self.world_size}, got {s.batch_size}",
            )
        self.device = self.strategy.device
        """The device this process trains on."""
        self.model = model.to(self.device)
        self.log_every = log_every
        self.num_workers = num_workers
        self.deterministic = deterministic
        self.inputs = dict(inputs) if inputs is not None else None
        self.data_name = data_name
        """What the data is called in messages (a spec's ``train.data`` type)."""
        self.callbacks: list[object] = list(callbacks)
        self._functions: dict[str, list[_Hook]] = {name: [] for name in HOOKS}

        self._loss_named = "loss" not in objects
        self.loss_fn = self._build_loss(objects.get("loss", s.loss))
        self._optimizer_given = objects.get("optimizer", s.optimizer)
        self.optimizer = self._build_optimizer(self._optimizer_given)
        self._schedule_given: Component | ScheduleObject | None = objects.get(
            "schedule", s.schedule
        )
        self.scheduler: Any = None
        """Built by :meth:`fit` (a schedule's length may depend on the data's)."""
        self.scaler = torch.amp.GradScaler(self.device.type) if s.precision == "fp16" else None
        # The model as called: compiled, and wrapped by the strategy for training
        # (evaluation calls the plain module: no collective calls).
        self._eval_forward: Callable[..., Any] = torch.compile(model) if s.compile else model
        wrapped = self.strategy.wrap(self.model)
        self._forward: Callable[..., Any] = (
            self._eval_forward
            if wrapped is self.model
            else (torch.compile(wrapped) if s.compile else wrapped)
        )
        self._loss_reduction = str(getattr(self.loss_fn, "reduction", "mean"))

        self.state = TrainerState(world_size=self.world_size)
        """Where training is: see :class:`TrainerState`."""
        self.batches_per_epoch: int | None = None
        self.thread_steps: dict[int, float] = {}
        """``threads: auto``'s measurement: each count's mean seconds per step (empty when it
        did not measure)."""
        self._generator = torch.Generator()  # the data loader's (worker seeds), per epoch
        self._loss_acc: torch.Tensor | None = None  # on the device, since the last sync
        self._acc_batches = 0
        self._saved_schedule: dict[str, Any] | None = None  # loaded before fit built it
        self._restore_rng = False
        self._started = False
        self._schedule_steps_on = "epoch"
        self._epoch_started = time.perf_counter()
        self._val_name = "val"
        self.monitor = self.settings.monitor or "val_loss"
        """The :attr:`history` column that picks the best epoch (set by :meth:`fit`)."""

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Spec, *, model: nn.Module | None = None, **overrides: Any) -> Trainer:
        """A trainer with the settings of ``spec.train`` (defaults where it has none).

        Without ``model``, builds the spec's model after seeding with ``train.seed``, so its
        initial weights are the same every run. ``overrides`` replace the spec's settings and
        set the others (``callbacks``, ``log_every``, ...).
        """
        t: TrainSpec = spec.train if spec.train is not None else TrainSpec.model_validate({})
        if model is None:
            from specnet._build.compiler import build_module

            seed_everything(t.seed)
            model = build_module(spec)
        settings = {k: v for k, v in t if k != "data"}  # the data is fit()'s
        given = {"inputs": spec.inputs, "source": spec.source}
        if t.data is not None:
            given["data_name"] = t.data.type
        return cls(model, **{**settings, **given, **overrides})

    def _training_loss(self, out: Any, y: Any) -> torch.Tensor:
        """The loss of a training step: of the output, or the weighted sum of the losses of
        the outputs a model returns in training (``train.loss_weights``: a Graph's
        ``train_output`` with auxiliary heads)."""
        weights = self.settings.loss_weights
        if isinstance(out, torch.Tensor) and weights is None:
            return self.loss_fn(out, y)
        n = len(out) if isinstance(out, (tuple, list)) else 1
        if weights is None or len(weights) != n or not isinstance(out, (tuple, list)):
            given = "none" if weights is None else f"{len(weights)}"
            raise self._error(
                "loss_weights",
                f"the model returns {n} output(s) in training and loss_weights gives {given}: "
                "give one weight per output (e.g. [1.0, 0.3, 0.3] for a main output and two "
                "auxiliary heads), or leave loss_weights out for a model with one output",
            )
        total: torch.Tensor = sum(  # type: ignore[assignment]
            w * self.loss_fn(o, y) for w, o in zip(weights, out, strict=True)
        )
        return total

    def _error(self, key: str, msg: str) -> TrainingError | SpecValidationError:
        """An error about the setting ``key``: located in the spec when the trainer has one."""
        if self.source is None:
            return TrainingError(msg)
        path: Path = ("train", key)
        return SpecValidationError([self.source.error(path, msg, kind="value")])

    def _construct(
        self, key: str, registry: Registry, c: Component, *args: Any, **extra: Any
    ) -> Any:
        """The torch object ``c`` names, built with ``args``, ``c.args`` and ``extra``."""
        if c.type not in registry:
            raise self._error(key, registry.unknown(c.type))
        try:
            return registry[c.type].build_target()(*args, **{**c.args, **extra})
        except (TypeError, ValueError) as exc:  # torch's checks of the arguments
            raise self._error(key, f"{c.type}: {exc}") from None

    def _build_loss(self, value: Component | LossObject) -> Callable[..., torch.Tensor]:
        """A loss by torch name (list-valued ``weight``/``pos_weight`` become tensors), or as given."""
        if isinstance(value, nn.Module):
            return value.to(self.device)
        if not isinstance(value, Component):
            return value
        tensors = {
            k: torch.tensor(v, dtype=torch.float32)
            for k, v in value.args.items()
            if isinstance(v, list)
        }
        loss: nn.Module = self._construct("loss", losses(), value, **tensors)
        return loss.to(self.device)

    def _build_optimizer(self, value: Component | OptimizerObject) -> torch.optim.Optimizer:
        if isinstance(value, torch.optim.Optimizer):
            return value
        if not isinstance(value, Component):
            return value(self.model.parameters())
        optimizer: torch.optim.Optimizer = self._construct(
            "optimizer", optimizers(), value, self.model.parameters()
        )
        return optimizer

    def _build_scheduler(self, steps_per_epoch: int | None) -> Any:
        c = self._schedule_given
        if c is None or isinstance(c, torch.optim.lr_scheduler.LRScheduler):
            return c
        if hasattr(c, "step") and hasattr(c, "state_dict"):  # ReduceLROnPlateau & co
            return c
        if not isinstance(c, Component):
            return c(self.optimizer)
        takes = schedulers()[c.type].by_name if c.type in schedulers() else {}
        extra: dict[str, Any] = from_epochs(c, self.settings.epochs)  # CosineAnnealingLR's T_max
        cycle = extra.pop("epochs", None)  # OneCycleLR given neither total_steps nor epochs
        if "total_steps" in takes and c.args.get("total_steps") is None:  # OneCycleLR
            if cycle is not None:
                if steps_per_epoch:
                    extra["total_steps"] = cycle * steps_per_epoch
            elif c.args.get("steps_per_epoch") is None:
                extra["steps_per_epoch"] = steps_per_epoch
            if not (
                extra.get("total_steps")
                or extra.get("steps_per_epoch")
                or c.args.get("steps_per_epoch")
            ):
                raise self._error(
                    "schedule", f"{c.type} needs total_steps when the data has no length"
                )
        return self._construct("schedule", schedulers(), c, self.optimizer, **extra)

    def on(self, hook: str, fn: _Hook) -> _Hook:
        """Call ``fn(trainer, ...)`` at ``hook`` (one of :data:`HOOKS`); returns ``fn``."""
        if hook not in self._functions:
            raise ValueError(f"unknown hook {hook!r}; hooks are {', '.join(HOOKS)}")
        self._functions[hook].append(fn)
        return fn

    def _hooks(self, name: str) -> list[_Hook]:
        found: list[_Hook] = [
            getattr(cb, name) for cb in self.callbacks if callable(getattr(cb, name, None))
        ]
        return found + self._functions[name]

    # -- where training is ----------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This process's rank among :attr:`world_size` (0 in a single process)."""
        return self.strategy.rank

    @property
    def world_size(self) -> int:
        """The number of processes training together (1 unless launched by torchrun)."""
        return self.strategy.world_size

    @property
    def epoch(self) -> int:
        """Epochs completed (while training: the index of the current epoch)."""
        return self.state.epoch

    @property
    def batch_in_epoch(self) -> int:
        """Batches done in the current epoch."""
        return self.state.batch_in_epoch

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.state.step

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per epoch: epoch, step, train_loss, val_loss, val_<metric>..., lr, seconds."""
        return self.state.history

    @property
    def log(self) -> list[dict[str, Any]]:
        """One row every ``log_every`` optimizer steps: epoch, step, train_loss, lr."""
        return self.state.log

    @property
    def at_step_boundary(self) -> bool:
        """Whether the last batch ended with an optimizer step (no gradients pending)."""
        return self.state.batch_in_epoch % self.settings.grad_accum_steps == 0

    @property
    def lr(self) -> float:
        """The first parameter group's learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    # -- data ---------------------------------------------------------------------------

    def _loader(self, data: DataLike, *, train: bool, shard: bool = True) -> Iterable[Any]:
        if isinstance(data, torch.Tensor):
            data = TensorDataset(data)
        if isinstance(data, IterableDataset):  # samples in the stream's order, batched
            return DataLoader(
                data,
                batch_size=self.settings.batch_size,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
            )
        if not _map_style(data):
            return cast(Iterable[Any], data)
        order = BatchOrder(
            len(data),  # type: ignore[arg-type]
            self.settings.batch_size,
            seed=self.state.data_seed or 0,
            shuffle=train,
            world=self.world_size if shard else 1,
            rank=self.rank if shard else 0,
            pad=train,
        )
        if self.settings.data_on_device or self._indexable(data):
            return _DeviceBatches(data, order, self.device)
        return DataLoader(
            data,
            batch_sampler=order,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=self._generator,
        )

    def _indexable(self, data: object) -> bool:
        """Whether ``data`` is a plain TensorDataset already on the training device, read in
        this process (a subclass's own ``__getitem__`` is honoured, through a DataLoader)."""
        return (
            _plain_tensors(data)
            and self.num_workers == 0
            and all(_same_device(t.device, self.device) for t in data.tensors)
        )

    def _check_data(self, data: DataLike, what: str) -> None:
        if self.inputs is None or not _map_style(data):
            return
        from .data import check_fits

        check_fits(data, what, self.inputs, self.source)

    def _named_data(self, split: str) -> str:
        return f"{self.data_name} ({split} split)" if self.data_name else f"the {split} data"

    def _check_before_training(
        self, train_data: DataLike, val_data: DataLike | None, steps: int | None
    ) -> None:
        """Refuse, before the first step, what torch would only reject (or silently accept) at
        the first step: a batch larger than the data set, targets the loss cannot take, and
        optimizer or schedule arguments that fail at their first step."""
        if _map_style(train_data):
            n = len(train_data)  # type: ignore[arg-type]
            if n == 0:
                raise self._error(
                    "data",
                    f"{self._named_data('train')} has no samples: there is nothing to train on",
                )
            if self.settings.batch_size > n:
                raise self._error(
                    "batch_size",
                    f"batch_size {self.settings.batch_size} is larger than "
                    f"{self._named_data('train')}, which has {n} samples: every epoch would be "
                    f"one batch of {n}; set batch_size to at most {n}",
                )
        self._check_targets(train_data, "train")
        if val_data is not None:
            self._check_targets(val_data, self._val_name)
        mismatch = monitor_mismatch(self.state.monitor, self.monitor)
        if mismatch is not None:
            raise self._error("monitor", mismatch)
        problem = monitor_refused(self.settings, self._val_name if val_data is not None else None)
        if problem is not None:
            raise self._error("monitor", problem)
        self._rehearse(steps)

    def _check_targets(self, data: DataLike, split: str) -> None:
        """The model's output on a sample batch (the data's first samples, in eval mode, no
        random state drawn) against the targets and the loss (:func:`target_problem`)."""
        if not _map_style(data) or len(data) == 0:  # type: ignore[arg-type]
            return
        from .targets import target_problem

        k = min(len(data), self.settings.batch_size)  # type: ignore[arg-type]
        with contextlib.ExitStack() as stack:
            devices = [self.device] if self.device.type == "cuda" else []
            stack.enter_context(torch.random.fork_rng(devices=devices))
            python_state = random.getstate()
            stack.callback(random.setstate, python_state)
            batch: Any
            if isinstance(data, TensorDataset) and len(data.tensors) == 2:
                batch = (data.tensors[0][:k], data.tensors[1][:k])
            else:
                batch = default_collate([data[i] for i in range(k)])
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                return
            x, y = batch
            if not isinstance(y, torch.Tensor):
                return
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad(), self._autocast():
                    out = self._call(_move(x, self.device), self.model)
                    if not isinstance(out, torch.Tensor):
                        return
                    y = y.to(self.device)
                    problem = target_problem(self.loss_fn, out, y, _all_targets(data))
                    if problem is None and self._loss_named:  # not a caller's function
                        try:
                            value = self.loss_fn(out, y)
                        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                            problem = (
                                f"{type(self.loss_fn).__name__} cannot take the model's output "
                                f"{list(out.shape)} and targets {list(y.shape)} "
                                f"({str(y.dtype).removeprefix('torch.')}): "
                                f"{str(exc).strip().splitlines()[0]}"
                            )
                        else:
                            if isinstance(value, torch.Tensor) and value.dim() != 0:
                                problem = (
                                    f"{type(self.loss_fn).__name__} gives a loss of shape "
                                    f"{list(value.shape)} for a batch: training needs one "
                                    "number (reduction: mean or sum)"
                                )
            finally:
                self.model.train(was_training)
        if problem is not None:
            raise self._error("loss", f"{self._named_data(split)}: {problem}")

    def _rehearse(self, steps: int | None) -> None:
        """One optimizer step and one schedule step, each on a stand-in parameter, for
        arguments torch accepts when building but refuses at the first step (``StepLR
        step_size: 0``)."""
        opt_given, sched_given = self._optimizer_given, self._schedule_given
        if not isinstance(opt_given, Component) and not isinstance(sched_given, Component):
            return
        p = nn.Parameter(torch.zeros(2))
        if isinstance(opt_given, Component):
            stand_in = self._construct("optimizer", optimizers(), opt_given, [p])
        else:
            stand_in = torch.optim.SGD([p], lr=self.lr, momentum=0.9)
        p.grad = torch.ones_like(p)
        try:
            stand_in.step()
        except Exception as exc:  # whatever the optimizer's step raises
            raise self._error(
                "optimizer", f"{type(stand_in).__name__} fails at its first step: {_failure(exc)}"
            ) from None
        if not isinstance(sched_given, Component):
            return
        saved, self._schedule_given = self._schedule_given, sched_given
        optimizer, self.optimizer = self.optimizer, stand_in
        try:
            schedule = self._build_scheduler(steps)
        finally:
            self._schedule_given, self.optimizer = saved, optimizer
        # The run's schedule steps (a OneCycleLR's total_steps may be too few), bounded.
        stepping = _stepping_of(schedule)
        epochs = self.settings.epochs
        total = epochs * (steps or 1) if stepping == "batch" else epochs
        done = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                while done < min(total, _REHEARSED_STEPS):
                    done += 1
                    if stepping == "metric":
                        schedule.step(1.0)
                    else:
                        schedule.step()
        except Exception as exc:  # whatever the schedule's step raises
            unit = "optimizer step" if stepping == "batch" else "epoch"
            raise self._error(
                "schedule",
                f"{sched_given.type} fails at {unit} {done} of the run's {total}: {_failure(exc)}",
            ) from None

    # -- the loop -----------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        precision = self.settings.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _call(self, x: Any, forward: Callable[..., Any] | None = None) -> Any:
        f = forward or self._forward
        if isinstance(x, Mapping):
            return f(**x)
        if isinstance(x, (tuple, list)):
            return f(*x)
        return f(x)

    def _optimizer_step(self) -> None:
        params = self.model.parameters()
        clip = self.settings.clip_grad_norm
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.scheduler is not None and self._schedule_steps_on == "batch":
            self.scheduler.step()

    def sync(self) -> None:
        """Read the losses accumulated on the device; stop if one was not finite.

        Raises :class:`NonFiniteLossError` naming the steps where the loss went bad.
        """
        if self._loss_acc is None or self._acc_batches == 0:
            return
        total = float(self.strategy.mean_loss_(self._loss_acc).item())
        n = self._acc_batches
        self._loss_acc.zero_()
        self._acc_batches = 0
        st = self.state
        if not math.isfinite(total):
            first = max(st.step - math.ceil(n / self.settings.grad_accum_steps) + 1, 1)
            last = max(st.step, 1)
            steps = (
                f"at optimizer step {last}"
                if first >= last
                else f"between optimizer steps {first} and {last}"
            )
            raise NonFiniteLossError(
                f"the training loss is {total} (not finite) in epoch {st.epoch + 1}, "
                f"{steps}; training stopped"
            )
        st.epoch_loss += total
        st.epoch_batches += n
        st.interval_loss += total
        st.interval_batches += n

    def _log_row(self) -> dict[str, Any]:
        self.sync()
        st = self.state
        row = {
            "epoch": st.epoch + 1,
            "step": st.step,
            "train_loss": st.interval_loss / max(st.interval_batches, 1),
            "lr": self.lr,
        }
        st.interval_loss, st.interval_batches = 0.0, 0
        st.log.append(row)
        return row

    def fit(
        self, train_data: DataLike, val_data: DataLike | None = None, *, val_name: str = "val"
    ) -> list[dict[str, Any]]:
        """Train for the remaining epochs (all, unless resumed, or until early stopping);
        returns :attr:`history`.

        ``val_data`` is evaluated after each epoch, its loss and metrics in :attr:`history` as
        ``<val_name>_loss``, ``<val_name>_<metric>`` (``val_name="test"`` when the data is a
        test split). The monitored metric (``settings.monitor``, by default the evaluated
        loss, else the training loss) marks the best epoch (:attr:`improved`) and, with
        ``settings.early_stopping``, stops training once it has not improved for that many
        epochs. On the CPU, ``settings.threads`` ("auto": measured on the first batch, see
        :mod:`~specnet._train.threads`) sets torch's threads while training.

        Before the first step, in every process alike: a ``batch_size`` larger than a training
        ``Dataset`` is refused; the model's output on the data's first samples is checked
        against the targets and the loss (:mod:`~specnet._train.targets`: label dtype, shape
        and range, class weights, elementwise shapes); and the optimizer and the schedule
        given by name take a rehearsal step on a stand-in parameter (the schedule: the run's
        steps, at most 20,000), so arguments torch only rejects at a step are errors about
        the setting (located in the spec when the trainer has one).
        """
        self._check_data(train_data, "the training data")
        if val_data is not None:
            self._check_data(val_data, "the validation data")
        self._val_name = val_name
        self.monitor = default_monitor(self.settings, val_name if val_data is not None else None)
        if not self._started:
            # Every process seeds with seed + rank: the same model and data order (these
            # come from the seed alone), their own dropout masks.
            if self._seeded:
                seed_everything(self.settings.seed + self.rank)
                data_seed = self.settings.seed
            else:  # the caller's random state decides the order
                data_seed = int(torch.randint(2**62, ()).item())
            self.state.data_seed = self.strategy.broadcast(data_seed)
        self._started = True
        loader = self._loader(train_data, train=True)
        self.strategy.check_batches(getattr(loader, "batch_sampler", None), self.model)
        val_loader = self._loader(val_data, train=False) if val_data is not None else None
        try:
            self.batches_per_epoch = len(loader)  # type: ignore[arg-type]
        except TypeError:
            self.batches_per_epoch = None
        steps = (
            math.ceil(self.batches_per_epoch / self.settings.grad_accum_steps)
            if self.batches_per_epoch is not None
            else None
        )
        if self.scheduler is None:
            self.scheduler = self._build_scheduler(steps)
        self._schedule_steps_on = _stepping_of(self.scheduler)
        # Every process reaches the same verdict on the data and the settings (each checks
        # the same samples), before the first step.
        with _threads(self._checking_threads(train_data)):
            self.strategy.agree(lambda: self._check_before_training(train_data, val_data, steps))
        if self.state.threads is None:
            self.state.threads = self._choose_threads(train_data)
        if self._saved_schedule is not None:
            if self.scheduler is None:
                raise self._error(
                    "schedule", "the saved state has a schedule but this trainer has none"
                )
            self.scheduler.load_state_dict(self._saved_schedule)
            self._saved_schedule = None
        if self._restore_rng:
            _set_rng_state(self.state.rng_per_rank[self.rank])
            self._restore_rng = False
        if self._loss_acc is None:
            self._loss_acc = torch.zeros((), device=self.device)

        with self._determinism(), _threads(self.state.threads):
            for hook in self._hooks("on_fit_start"):
                hook(self)
            while self.state.epoch < self.settings.epochs and not self.state.stopped_early:
                self._train_epoch(loader)
                row = self._end_epoch(val_loader)
                for hook in self._hooks("on_epoch_end"):
                    hook(self, row)
            for hook in self._hooks("on_fit_end"):
                hook(self)
        return self.history

    @contextlib.contextmanager
    def _determinism(self) -> Iterator[None]:
        if not self.deterministic:
            yield
            return
        before = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark,
        )
        if self.device.type == "cuda":  # cuBLAS reads it when its first handle is made
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
            torch.backends.cudnn.benchmark = before[2]

    def _train_epoch(self, loader: Iterable[Any]) -> None:
        self.model.train()
        st = self.state
        seed = st.data_seed or 0
        self._generator.manual_seed(seed + st.epoch)
        order = getattr(loader, "batch_sampler", None)
        if isinstance(order, BatchOrder):
            order.seed, order.epoch, order.skip = seed, st.epoch, st.batch_in_epoch
        elif st.batch_in_epoch > 0:
            raise TrainingError(
                "resuming part-way through an epoch needs the training data as a Dataset "
                "(batched by the trainer), not a DataLoader or other iterable"
            )
        if st.batch_in_epoch == 0:
            self._epoch_started = time.perf_counter()
        for hook in self._hooks("on_epoch_start"):
            hook(self, st.epoch)
        batch_end = self._hooks("on_batch_end")
        log_hooks = self._hooks("on_log")
        acc = self._loss_acc
        assert acc is not None
        accum = self.settings.grad_accum_steps
        n_batches = self.batches_per_epoch
        for batch in loader:
            x, y = _move(batch[0], self.device), _move(batch[1], self.device)
            # Without an optimizer step after this batch, the processes need not average
            # gradients yet (when the epoch's length is unknown, any batch may be its last).
            will_step = (
                n_batches is None
                or (st.batch_in_epoch + 1) % accum == 0
                or st.batch_in_epoch + 1 == n_batches
            )
            with self.strategy.no_sync(will_step):
                with self._autocast():
                    loss = self._training_loss(self._call(x), y)
                raw = loss.detach()
                # This process's share of the global batch's loss (several processes).
                weight = self.strategy.loss_weight(order, st.batch_in_epoch, self._loss_reduction)
                if weight is not None:
                    loss = loss * weight
                scaled = loss / accum if accum > 1 else loss
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()  # type: ignore[no-untyped-call]
                else:
                    scaled.backward()  # type: ignore[no-untyped-call]
            acc += loss.detach()
            self._acc_batches += 1
            st.batch_in_epoch += 1
            if st.batch_in_epoch % accum == 0:
                self._optimizer_step()
                if self.log_every and st.step % self.log_every == 0:
                    row = self._log_row()
                    for hook in log_hooks:
                        hook(self, row)
            for hook in batch_end:
                hook(self, raw)
        if st.batch_in_epoch % accum:  # the epoch's last, smaller accumulation
            self._optimizer_step()

    def _end_epoch(self, val_loader: Iterable[Any] | None) -> dict[str, Any]:
        self.sync()
        st = self.state
        row: dict[str, Any] = {
            "epoch": st.epoch + 1,
            "step": st.step,
            "train_loss": st.epoch_loss / max(st.epoch_batches, 1),
        }
        if val_loader is not None:
            row.update({f"{self._val_name}_{k}": v for k, v in self._evaluate(val_loader).items()})
        row["lr"] = self.lr
        row["seconds"] = time.perf_counter() - self._epoch_started
        self._track_best(row)
        if self._schedule_steps_on == "metric":
            self.scheduler.step(row.get(f"{self._val_name}_loss", row["train_loss"]))
        elif self._schedule_steps_on == "epoch" and self.scheduler is not None:
            self.scheduler.step()
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_loss, st.epoch_batches = 0.0, 0
        st.history.append(row)
        return row

    def _track_best(self, row: Mapping[str, Any]) -> None:
        st, s = self.state, self.settings
        value = row.get(self.monitor)
        if not isinstance(value, float) or not math.isfinite(value):
            return
        st.monitor = self.monitor
        mode = monitor_mode(s, self.monitor)
        if (
            st.best is None
            or (mode == "min" and value < st.best - s.min_delta)
            or (mode == "max" and value > st.best + s.min_delta)
        ):
            st.best, st.best_epoch = value, st.epoch + 1
        if s.early_stopping is not None and st.epoch + 1 - st.best_epoch >= s.early_stopping:
            st.stopped_early = True

    @property
    def improved(self) -> bool:
        """Whether the last epoch ended has the monitored metric's best value so far."""
        return bool(self.state.history) and self.state.best_epoch == self.state.epoch

    def _checking_threads(self, train_data: DataLike) -> int | None:
        """The thread count of the checks before training: the run's when it is known or
        fixed, one while "auto" waits to be measured, else None (torch's). The checks are a
        few operators on one batch, and more threads only wait there for the cores of a busy
        machine (with torch's two threads they took 0.11-0.18 s on a busy two-core machine,
        with one next to nothing)."""
        if self.state.threads is not None:
            return self.state.threads
        if self.settings.threads != "auto":
            return self.settings.threads
        return 1 if self._measures_threads(train_data) else None

    def _measures_threads(self, train_data: DataLike) -> TypeGuard[Dataset[Any]]:
        """Whether "auto" is measured (:meth:`_choose_threads`): on the CPU, in one process,
        for a map-style ``Dataset`` with samples (its first batch is the one timed; an iterable
        one is not read ahead of its epochs)."""
        return (
            self.device.type == "cpu"
            and self.world_size == 1
            and _map_style(train_data)
            and len(train_data) > 0  # type: ignore[arg-type]
        )

    def _choose_threads(self, train_data: DataLike) -> int | None:
        """``settings.threads`` as a count, measured for "auto" (on the CPU, one process; with
        several, torchrun's share of the cores stands), at most torch's count (the caller's
        ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` is a limit). torch's count when it
        cannot be measured (iterable data, a model that cannot be copied); None off the CPU
        with "auto"."""
        wanted = self.settings.threads
        if wanted != "auto":
            return wanted
        if self.device.type != "cpu":
            return None
        limit = torch.get_num_threads()
        if not self._measures_threads(train_data):
            return limit
        counts = threads.candidates(min(threads.available_cores(), limit))
        if len(counts) == 1:
            return counts[0]
        try:
            model = copy.deepcopy(self.model).train()  # its batch statistics change
        except (TypeError, RuntimeError, copy.Error):  # e.g. a module holding a lock
            return limit
        n = min(self.settings.batch_size, len(train_data))  # type: ignore[arg-type]
        saved = _rng_state()  # a data set's transforms and the model's dropout draw from it
        try:
            x = _move(default_collate([train_data[i] for i in range(n)])[0], self.device)

            def step() -> None:
                # The model's forward and backward are the step's cost; the loss is a stand-in
                # (a loss given as a function is the caller's code, called only to train).
                model.zero_grad(set_to_none=True)
                with self._autocast():
                    out = self._call(x, model)
                parts = [t.float().mean() for t in _tensors(out) if t.requires_grad]
                if parts:
                    torch.stack(parts).sum().backward()  # type: ignore[no-untyped-call]

            chosen, self.thread_steps = threads.choose(step, counts)
        finally:
            _set_rng_state(saved)
        return chosen

    # -- evaluation and prediction -------------------------------------------------------

    def _working_threads(self) -> int | None:
        """The thread count evaluation and prediction use, as training does: the run's
        (measured by :meth:`fit` or restored with its state), else a fixed ``threads``, else
        None (torch's, as without a trainer)."""
        if self.state.threads is not None:
            return self.state.threads
        wanted = self.settings.threads
        return wanted if isinstance(wanted, int) else None

    def evaluate(self, data: DataLike) -> dict[str, float]:
        """Mean loss and the trainer's metrics over ``data`` (in eval mode, no gradients)."""
        self._check_data(data, "the evaluation data")
        with _threads(self._working_threads()):
            return self._evaluate(self._loader(data, train=False))

    def _evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        names = ("loss", *self.settings.metrics)
        # Each process evaluates its shard (perhaps none of it): they agree on the verdict
        # before summing.
        sums, counts = self.strategy.agree(lambda: self._evaluate_shard(loader))
        total = self.strategy.sum_(torch.cat([sums, counts]))
        values, n = total[: len(names)].tolist(), total[len(names) :].tolist()
        return {k: v / c if c else math.nan for k, v, c in zip(names, values, n, strict=True)}

    def _evaluate_shard(self, loader: Iterable[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's sums of the loss and of each metric, and how many values each sums."""
        metrics = [METRICS[name] for name in self.settings.metrics]
        sums = torch.zeros(1 + len(metrics), dtype=torch.float64, device=self.device)
        counts = [0] * (1 + len(metrics))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    x, y = _move(batch[0], self.device), _move(batch[1], self.device)
                    with self._autocast():
                        out = self._call(x, self._eval_forward)
                        loss = self.loss_fn(out, y)
                    n = len(y)
                    sums[0] += loss.detach().double() * n
                    counts[0] += n
                    for i, metric in enumerate(metrics, 1):
                        if not metric.needs.fits(out, y):
                            raise self._error(
                                "metrics",
                                f"metric '{metric.name}' needs {metric.needs.text}; got outputs "
                                f"of shape {list(out.shape)} and {str(y.dtype).removeprefix('torch.')} "
                                f"targets of shape {list(y.shape)}",
                            )
                        value, count = metric.total(out, y)
                        sums[i] += value
                        counts[i] += count
        finally:
            self.model.train(was_training)
        return sums, torch.tensor(counts, dtype=torch.float64, device=self.device)

    def predict(self, data: DataLike | torch.Tensor) -> torch.Tensor:
        """The model's outputs for ``data``, concatenated on the CPU.

        ``data`` is a tensor of inputs, or a data set or loader of inputs or of
        ``(input, target)`` pairs (the targets are ignored).
        """
        loader = self._loader(data, train=False, shard=False)
        was_training = self.model.training
        self.model.eval()
        outs: list[torch.Tensor] = []
        # No samples: the model on the empty batch, so the output is [0, ...] as it would be.
        batches: Any = [data] if isinstance(data, torch.Tensor) and len(data) == 0 else loader
        try:
            with torch.no_grad(), _threads(self._working_threads()):
                for batch in batches:
                    x = batch[0] if isinstance(batch, (tuple, list)) and len(batch) <= 2 else batch
                    with self._autocast():
                        out = self._call(_move(x, self.device), self._eval_forward)
                    outs.append(out.float().cpu() if out.is_floating_point() else out.cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0)

    # -- state --------------------------------------------------------------------------

    def _components(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COMPONENTS}

    def state_dict(self) -> dict[str, Any]:
        """Everything but the model's weights needed to continue exactly where training is:
        the :class:`TrainerState`'s fields and the optimizer's, schedule's and scaler's states.

        Reads the device's accumulated loss first, so a checkpoint never holds a state reached
        through a loss that was not finite.
        """
        self.sync()
        st = self.state
        st.epoch_seconds = time.perf_counter() - self._epoch_started if st.batch_in_epoch else 0.0
        st.rng_per_rank = self.strategy.gather(_rng_state())
        parts = {
            k: v.state_dict() if v is not None else None for k, v in self._components().items()
        }
        return {**st.state_dict(), **parts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the model's weights are loaded separately).

        The state must come from as many processes as train now: each one's random state is
        in it, and dropout draws from them.
        """
        problem = world_size_mismatch(state, self.world_size, "the saved state")
        if problem:
            raise TrainingError(problem)
        if (state["scaler"] is None) != (self.scaler is None):
            raise self._error(
                "precision", "the saved state and this trainer differ in precision (fp16 or not)"
            )
        self.state.load_state_dict(state)
        for name, component in self._components().items():
            saved = state[name]
            if saved is None:
                continue
            if component is not None:
                component.load_state_dict(saved)
            elif name == "scheduler":  # fit builds it
                self._saved_schedule = saved
        self._restore_rng = True
        self._epoch_started = time.perf_counter() - self.state.epoch_seconds
        self._started = True
