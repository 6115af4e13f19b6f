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
training with :class:`FloatingPointError` at the next point the loss is read (a log row, a
checkpoint, the epoch's end), before any state is saved.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from specnet._front.registry import losses, optimizers, schedulers
from specnet._front.spec import TensorSpec
from specnet._front.trainspec import Component, TrainSpec

from . import distributed as _distributed

if TYPE_CHECKING:
    from specnet._front.source import SourceMap
    from specnet._front.spec import Spec

__all__ = ["HOOKS", "Callback", "Trainer", "resolve_device", "seed_everything"]

HOOKS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_end",
    "on_log",
    "on_epoch_end",
    "on_fit_end",
)
"""Hook names, in the order they are first called."""

Metric = Literal["accuracy", "top5_accuracy", "mse", "mae"]
METRICS: tuple[Metric, ...] = ("accuracy", "top5_accuracy", "mse", "mae")

PER_STEP_SCHEDULES = frozenset({"OneCycleLR", "CyclicLR"})
"""Schedules that step after every optimizer step; the others step once per epoch."""

ComponentLike = str | Mapping[str, Any] | Component
LossLike = ComponentLike | nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerLike = (
    ComponentLike
    | torch.optim.Optimizer
    | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
)
ScheduleLike = ComponentLike | torch.optim.lr_scheduler.LRScheduler | Callable[..., Any] | None
DataLike = Dataset[Any] | DataLoader[Any] | Iterable[Any]


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


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        raise ValueError(f"expected a mapping with a 'type' name, got {dict(value)!r}")
    return Component(type=kind, args=args)


def _lookup(registry: Any, c: Component) -> Any:
    if c.type not in registry:
        raise ValueError(registry.unknown(c.type))
    return registry[c.type].build_target()


def build_loss(value: LossLike, device: torch.device) -> Callable[..., torch.Tensor]:
    """A loss by torch name (list-valued ``weight``/``pos_weight`` become tensors), or as given."""
    if isinstance(value, nn.Module):
        return value.to(device)
    if callable(value):
        return value
    c = _component(value)
    args = {
        k: torch.tensor(v, dtype=torch.float32) if isinstance(v, list) else v
        for k, v in c.args.items()
    }
    loss: nn.Module = _lookup(losses(), c)(**args)
    return loss.to(device)


class _DeviceBatches:
    """A data set held whole on the training device, batched by indexing there.

    For small data sets on a GPU: one copy at the start instead of one per batch. The samples
    are read (and transformed) once.
    """

    def __init__(self, data: Dataset[Any], order: _distributed.BatchOrder, device: torch.device):
        self.batch_sampler = order
        if isinstance(data, TensorDataset):
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


def _take(value: Any, index: torch.Tensor) -> Any:
    return _map_tensors(value, lambda t: t[index], other=_not_on_device)


def _not_on_device(value: Any) -> Any:
    raise TypeError(f"cannot keep {type(value).__name__} samples on the device")


_NO_SYNC = contextlib.nullcontext()


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


class Trainer:
    """Trains, evaluates and runs any ``nn.Module``.

    ``loss``, ``optimizer`` and ``schedule`` take torch names (``"CrossEntropyLoss"``,
    ``{"type": "SGD", "lr": 0.01, "momentum": 0.9}``) or torch objects: a loss module or
    function, an optimizer or a function of the parameters returning one, a scheduler or a
    function of the optimizer returning one. The other settings are those of a spec's
    ``train:`` section (``optimizer`` defaults to Adam with lr 0.001). ``inputs`` (a spec's input shapes) lets :meth:`fit` check that the
    data fits the model before the first step.

    Batches are ``(input, target)`` pairs; an input that is a tuple or a mapping is passed as
    positional or keyword arguments. ``fit`` and ``evaluate`` take a ``Dataset`` (batched by
    the trainer, shuffled with ``seed`` for training), a ``DataLoader`` or any iterable of
    batches; only a ``Dataset`` resumes mid-epoch in the same order.

    ``callbacks`` are objects with any of the methods in :data:`HOOKS` (see :class:`Callback`
    and this module's docstring for the order); :meth:`on` adds plain functions.
    :meth:`state_dict` and :meth:`load_state_dict` save and restore everything but the
    weights (see ``specnet._train.checkpoint``), random states and the data order included.

    Started by torchrun (``WORLD_SIZE`` > 1), the trainer joins the process group, trains
    through ``DistributedDataParallel`` with ``batch_size`` as the global batch (see
    ``specnet._train.distributed``), reduces losses and metrics across the processes, and gathers
    every process's random state into :meth:`state_dict`. Callbacks run in every process;
    :attr:`rank` tells them apart.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: LossLike = "CrossEntropyLoss",
        optimizer: OptimizerLike | None = None,
        schedule: ScheduleLike = None,
        epochs: int = 1,
        batch_size: int = 64,
        metrics: Sequence[Metric] = (),
        seed: int | None = 0,
        device: str | torch.device = "auto",
        precision: Literal["fp32", "bf16", "fp16"] = "fp32",
        grad_accum_steps: int = 1,
        clip_grad_norm: float | None = None,
        compile: bool = False,
        callbacks: Sequence[object] = (),
        log_every: int = 50,
        num_workers: int = 0,
        deterministic: bool = True,
        data_on_device: bool = False,
        inputs: Mapping[str, TensorSpec] | None = None,
        source: SourceMap | None = None,
    ) -> None:
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be at least 1, got {grad_accum_steps}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.device = _distributed.setup(resolve_device(device))
        self.rank = _distributed.rank()
        """This process's rank among :attr:`world_size` (0 in a single process)."""
        self.world_size = _distributed.world_size()
        """The number of processes training together (1 unless launched by torchrun)."""
        if batch_size < self.world_size:
            raise ValueError(
                f"batch_size is the global batch, shared by the {self.world_size} processes; "
                f"it must be at least {self.world_size}, got {batch_size}"
            )
        self.model = model.to(self.device)
        self.epochs = epochs
        self.batch_size = batch_size
        self.metrics: tuple[Metric, ...] = tuple(metrics)
        self.seed = seed
        self.precision = precision
        self.grad_accum_steps = grad_accum_steps
        self.clip_grad_norm = clip_grad_norm
        self.log_every = log_every
        self.num_workers = num_workers
        self.deterministic = deterministic
        self.data_on_device = data_on_device
        self.inputs = dict(inputs) if inputs is not None else None
        self.source = source
        self.callbacks: list[object] = list(callbacks)
        self._functions: dict[str, list[_Hook]] = {name: [] for name in HOOKS}

        self.loss_fn = build_loss(loss, self.device)
        self.optimizer = self._build_optimizer(
            optimizer if optimizer is not None else TrainSpec.model_validate({}).optimizer
        )
        self._schedule_spec = schedule
        self.scheduler: Any = None
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        # The model as called: compiled, and wrapped in DistributedDataParallel for training
        # in several processes (evaluation calls the plain module: no collective calls).
        self._eval_forward: Callable[..., Any] = torch.compile(model) if compile else model
        self._ddp: DistributedDataParallel | None = None
        self._forward = self._eval_forward
        if self.world_size > 1:
            cuda = self.device.type == "cuda"
            self._ddp = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
            self._forward = torch.compile(self._ddp) if compile else self._ddp
        self._loss_reduction = str(getattr(self.loss_fn, "reduction", "mean"))

        self.epoch = 0
        """Epochs completed (while training: the index of the current epoch)."""
        self.batch_in_epoch = 0
        """Batches done in the current epoch."""
        self.step = 0
        """Optimizer steps done."""
        self.batches_per_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        """One row per epoch: epoch, step, train_loss, val_loss, val_<metric>..., lr, seconds."""
        self.log: list[dict[str, Any]] = []
        """One row every ``log_every`` optimizer steps: epoch, step, train_loss, lr."""

        self._generator = torch.Generator()  # the data loader's (worker seeds), per epoch
        self._data_seed: int | None = None
        self._n_train: int | None = None  # samples, when the trainer batches a Dataset
        self._loss_acc: torch.Tensor | None = None  # on the device, since the last sync
        self._acc_batches = 0
        self._epoch_sum = 0.0
        self._epoch_batches = 0
        self._interval_sum = 0.0
        self._interval_batches = 0
        self._pending: dict[str, Any] = {}
        self._started = False
        self._per_step_schedule = False
        self._epoch_started = time.perf_counter()

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
            from specnet._api import build

            seed_everything(t.seed)
            model = build(spec)
        settings: dict[str, Any] = {
            "loss": t.loss,
            "optimizer": t.optimizer,
            "schedule": t.schedule,
            "epochs": t.epochs,
            "batch_size": t.batch_size,
            "metrics": t.metrics,
            "seed": t.seed,
            "device": t.device,
            "precision": t.precision,
            "grad_accum_steps": t.grad_accum_steps,
            "clip_grad_norm": t.clip_grad_norm,
            "compile": t.compile,
            "data_on_device": t.data_on_device,
            "inputs": spec.inputs,
            "source": spec.source,
        }
        settings.update(overrides)
        return cls(model, **settings)

    def _build_optimizer(self, value: OptimizerLike) -> torch.optim.Optimizer:
        if isinstance(value, torch.optim.Optimizer):
            return value
        if callable(value) and not isinstance(value, (str, Mapping, Component)):
            return value(self.model.parameters())
        c = _component(value)
        optimizer: torch.optim.Optimizer = _lookup(optimizers(), c)(
            self.model.parameters(), **c.args
        )
        return optimizer

    def _build_scheduler(self, steps_per_epoch: int | None) -> Any:
        value = self._schedule_spec
        if value is None or isinstance(value, torch.optim.lr_scheduler.LRScheduler):
            return value
        if hasattr(value, "step") and hasattr(value, "state_dict"):  # ReduceLROnPlateau & co
            return value
        if callable(value) and not isinstance(value, (str, Mapping, Component)):
            return value(self.optimizer)
        c = _component(value)
        args = dict(c.args)
        if c.type == "OneCycleLR" and args.get("total_steps") is None:
            if args.get("epochs") is None:
                args["total_steps"] = self.epochs * steps_per_epoch if steps_per_epoch else None
            elif args.get("steps_per_epoch") is None:
                args["steps_per_epoch"] = steps_per_epoch
            if args.get("total_steps") is None and args.get("steps_per_epoch") is None:
                raise ValueError("OneCycleLR needs total_steps when the data has no length")
        return _lookup(schedulers(), c)(self.optimizer, **args)

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

    # -- data ---------------------------------------------------------------------------

    def _loader(self, data: DataLike, *, train: bool, shard: bool = True) -> Iterable[Any]:
        if isinstance(data, torch.Tensor):
            data = TensorDataset(data)
        if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
            return cast(Iterable[Any], data)
        order = _distributed.BatchOrder(
            len(data),
            self.batch_size,
            seed=self._data_seed or 0,
            shuffle=train,
            world=self.world_size if shard else 1,
            rank=self.rank if shard else 0,
            pad=train,
        )
        if self.data_on_device:
            return _DeviceBatches(data, order, self.device)
        return DataLoader(
            data,
            batch_sampler=order,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=self._generator,
        )

    def _check_data(self, data: DataLike, what: str) -> None:
        if self.inputs is None or not isinstance(data, Dataset) or not hasattr(data, "__len__"):
            return
        from .data import check_fits

        check_fits(data, what, self.inputs, self.source)

    def _check_shares(self, order: object) -> None:
        """Refuse batches that leave a process too few samples for its BatchNorm layers."""
        if self.world_size == 1 or not isinstance(order, _distributed.BatchOrder):
            return
        share, size = order.smallest_share()
        if share < 2 and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()
        ):
            raise ValueError(
                f"with {self.world_size} processes, a batch of {size} samples (of {order.n}, in "
                f"batches of {self.batch_size}) leaves a process {share} sample(s), and the "
                "model's BatchNorm layers need at least 2 per process in training; choose a "
                "batch_size for which every batch, the epoch's last included, has at least "
                f"{2 * self.world_size} samples"
            )

    # -- the loop -----------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _call(self, x: Any, forward: Callable[..., Any] | None = None) -> Any:
        f = forward or self._forward
        if isinstance(x, Mapping):
            return f(**x)
        if isinstance(x, (tuple, list)):
            return f(*x)
        return f(x)

    @property
    def at_step_boundary(self) -> bool:
        """Whether the last batch ended with an optimizer step (no gradients pending)."""
        return self.batch_in_epoch % self.grad_accum_steps == 0

    @property
    def lr(self) -> float:
        """The first parameter group's learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _optimizer_step(self) -> None:
        params = self.model.parameters()
        if self.scaler is not None:
            if self.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if self.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.scheduler is not None and self._per_step_schedule:
            self.scheduler.step()

    def sync(self) -> None:
        """Read the losses accumulated on the device; stop if one was not finite.

        Raises :class:`FloatingPointError` naming the steps where the loss went bad.
        """
        if self._loss_acc is None or self._acc_batches == 0:
            return
        if self.world_size > 1:  # the processes' weighted shares sum to world_size x the mean
            _distributed.all_reduce_sum(self._loss_acc)
            self._loss_acc /= self.world_size
        total = float(self._loss_acc.item())
        n = self._acc_batches
        self._loss_acc.zero_()
        self._acc_batches = 0
        if not math.isfinite(total):
            first = max(self.step - math.ceil(n / self.grad_accum_steps) + 1, 1)
            last = max(self.step, 1)
            steps = (
                f"at optimizer step {last}"
                if first >= last
                else f"between optimizer steps {first} and {last}"
            )
            raise FloatingPointError(
                f"the training loss is {total} (not finite) in epoch {self.epoch + 1}, "
                f"{steps}; training stopped"
            )
        self._epoch_sum += total
        self._epoch_batches += n
        self._interval_sum += total
        self._interval_batches += n

    def _log_row(self) -> dict[str, Any]:
        self.sync()
        row = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": self._interval_sum / max(self._interval_batches, 1),
            "lr": self.lr,
        }
        self._interval_sum, self._interval_batches = 0.0, 0
        self.log.append(row)
        return row

    def fit(self, train_data: DataLike, val_data: DataLike | None = None) -> list[dict[str, Any]]:
        """Train for the remaining epochs (all, unless resumed); returns :attr:`history`."""
        self._check_data(train_data, "the training data")
        if val_data is not None:
            self._check_data(val_data, "the validation data")
        if not self._started and "rng" not in self._pending:
            # Every process seeds with seed + rank: the same model and data order (these
            # come from the seed alone), their own dropout masks.
            if self.seed is not None:
                seed_everything(self.seed + self.rank)
                self._data_seed = self.seed
            else:  # the caller's random state decides the order
                self._data_seed = int(torch.randint(2**62, ()).item())
            self._data_seed = _distributed.broadcast_object(self._data_seed)
        self._started = True
        loader = self._loader(train_data, train=True)
        self._check_shares(getattr(loader, "batch_sampler", None))
        val_loader = self._loader(val_data, train=False) if val_data is not None else None
        try:
            self.batches_per_epoch = len(loader)  # type: ignore[arg-type]
        except TypeError:
            self.batches_per_epoch = None
        steps = (
            math.ceil(self.batches_per_epoch / self.grad_accum_steps)
            if self.batches_per_epoch is not None
            else None
        )
        if self.scheduler is None:
            self.scheduler = self._build_scheduler(steps)
        self._per_step_schedule = type(self.scheduler).__name__ in PER_STEP_SCHEDULES
        if "scheduler" in self._pending:
            if self.scheduler is None:
                raise ValueError("the saved state has a schedule but this trainer has none")
            self.scheduler.load_state_dict(self._pending.pop("scheduler"))
        rng = self._pending.pop("rng", None)
        if rng is not None:
            _set_rng_state(rng)
        if self._loss_acc is None:
            self._loss_acc = torch.zeros((), device=self.device)

        with self._determinism():
            for hook in self._hooks("on_fit_start"):
                hook(self)
            while self.epoch < self.epochs:
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
        seed = self._data_seed or 0
        self._generator.manual_seed(seed + self.epoch)
        order = getattr(loader, "batch_sampler", None)
        if isinstance(order, _distributed.BatchOrder):
            order.seed, order.epoch, order.skip = seed, self.epoch, self.batch_in_epoch
        elif self.batch_in_epoch > 0:
            raise ValueError(
                "resuming part-way through an epoch needs the training data as a Dataset "
                "(batched by the trainer), not a DataLoader or other iterable"
            )
        if self.batch_in_epoch == 0:
            self._epoch_started = time.perf_counter()
        weighted = isinstance(order, _distributed.BatchOrder) and self.world_size > 1
        for hook in self._hooks("on_epoch_start"):
            hook(self, self.epoch)
        batch_end = self._hooks("on_batch_end")
        log = self._hooks("on_log")
        acc = self._loss_acc
        assert acc is not None
        accum = self.grad_accum_steps
        n_batches = self.batches_per_epoch
        for batch in loader:
            x, y = _move(batch[0], self.device), _move(batch[1], self.device)
            # Without an optimizer step after this batch, DDP need not average gradients yet
            # (when the epoch's length is unknown, any batch may be its last: always average).
            steps = (
                n_batches is None
                or (self.batch_in_epoch + 1) % accum == 0
                or self.batch_in_epoch + 1 == n_batches
            )
            sync = self._ddp.no_sync() if self._ddp is not None and not steps else _NO_SYNC
            with sync:
                with self._autocast():
                    loss = self.loss_fn(self._call(x), y)
                raw = loss.detach()
                if weighted:  # this process's share of the global batch's loss
                    assert order is not None
                    loss = loss * _distributed.loss_weight(
                        order.n,
                        self.batch_size,
                        self.batch_in_epoch,
                        self.world_size,
                        self.rank,
                        self._loss_reduction,
                    )
                scaled = loss / accum if accum > 1 else loss
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()  # type: ignore[no-untyped-call]
                else:
                    scaled.backward()  # type: ignore[no-untyped-call]
            acc += loss.detach()
            self._acc_batches += 1
            self.batch_in_epoch += 1
            if self.batch_in_epoch % accum == 0:
                self._optimizer_step()
                if self.log_every and self.step % self.log_every == 0:
                    row = self._log_row()
                    for hook in log:
                        hook(self, row)
            for hook in batch_end:
                hook(self, raw)
        if self.batch_in_epoch % accum:  # the epoch's last, smaller accumulation
            self._optimizer_step()

    def _end_epoch(self, val_loader: Iterable[Any] | None) -> dict[str, Any]:
        self.sync()
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": self._epoch_sum / max(self._epoch_batches, 1),
        }
        if val_loader is not None:
            row.update({f"val_{k}": v for k, v in self._evaluate(val_loader).items()})
        row["lr"] = self.lr
        row["seconds"] = time.perf_counter() - self._epoch_started
        if self.scheduler is not None and not self._per_step_schedule:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(row.get("val_loss", row["train_loss"]))
            else:
                self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_sum, self._epoch_batches = 0.0, 0
        self.history.append(row)
        return row

    # -- evaluation and prediction -------------------------------------------------------

    def evaluate(self, data: DataLike) -> dict[str, float]:
        """Mean loss and the trainer's metrics over ``data`` (in eval mode, no gradients)."""
        self._check_data(data, "the evaluation data")
        return self._evaluate(self._loader(data, train=False))

    def _evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        sums = torch.zeros(1 + len(self.metrics), dtype=torch.float64, device=self.device)
        counts = [0] * (1 + len(self.metrics))
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
                    for i, metric in enumerate(self.metrics, 1):
                        value, count = _metric(metric, out, y)
                        sums[i] += value
                        counts[i] += count
        finally:
            self.model.train(was_training)
        if self.world_size > 1:  # each process evaluated its shard of the data
            total = torch.cat([sums, torch.tensor(counts, dtype=torch.float64, device=sums.device)])
            _distributed.all_reduce_sum(total)
            sums, counts = total[: len(counts)], [int(c) for c in total[len(counts) :].tolist()]
        values = sums.tolist()
        names = ("loss", *self.metrics)
        return {k: v / c if c else math.nan for k, v, c in zip(names, values, counts, strict=True)}

    def predict(self, data: DataLike | torch.Tensor) -> torch.Tensor:
        """The model's outputs for ``data``, concatenated on the CPU.

        ``data`` is a tensor of inputs, or a data set or loader of inputs or of
        ``(input, target)`` pairs (the targets are ignored).
        """
        loader = self._loader(data, train=False, shard=False)
        was_training = self.model.training
        self.model.eval()
        outs: list[torch.Tensor] = []
        try:
            with torch.no_grad():
                for batch in loader:
                    x = batch[0] if isinstance(batch, (tuple, list)) and len(batch) <= 2 else batch
                    with self._autocast():
                        out = self._call(_move(x, self.device), self._eval_forward)
                    outs.append(out.float().cpu() if out.is_floating_point() else out.cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything but the model's weights needed to continue exactly where training is.

        Reads the device's accumulated loss first, so a checkpoint never holds a state reached
        through a loss that was not finite.
        """
        self.sync()
        mid_epoch = self.batch_in_epoch > 0
        rng = _distributed.gather_objects(_rng_state())
        return {
            "world_size": self.world_size,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "history": [dict(r) for r in self.history],
            "log": [dict(r) for r in self.log],
            "sums": [
                self._epoch_sum,
                self._epoch_batches,
                self._interval_sum,
                self._interval_batches,
            ],
            "rng": rng[0],
            "rng_per_rank": rng if self.world_size > 1 else [],
            "data_seed": self._data_seed,
            "epoch_seconds": time.perf_counter() - self._epoch_started if mid_epoch else 0.0,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the model's weights are loaded separately).

        The state must come from as many processes as train now: each one's random state is
        in it, and dropout draws from them.
        """
        problem = _distributed.world_size_mismatch(state, self.world_size, "the saved state")
        if problem:
            raise ValueError(problem)
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            else:
                self._pending["scheduler"] = state["scheduler"]
        if (state["scaler"] is None) != (self.scaler is None):
            raise ValueError("the saved state and this trainer differ in precision (fp16 or not)")
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.history = [dict(r) for r in state["history"]]
        self.log = [dict(r) for r in state["log"]]
        sums = state["sums"]
        self._epoch_sum, self._epoch_batches = float(sums[0]), int(sums[1])
        self._interval_sum, self._interval_batches = float(sums[2]), int(sums[3])
        per_rank = state.get("rng_per_rank") or []
        self._pending["rng"] = per_rank[self.rank] if per_rank else state["rng"]
        self._data_seed = state["data_seed"]
        self._epoch_started = time.perf_counter() - float(state["epoch_seconds"])
        self._started = True


def _metric(name: Metric, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A metric's sum over the batch (on the device) and how many values it sums."""
    if name in ("accuracy", "top5_accuracy"):
        if out.dim() < 2 or y.is_floating_point():
            raise ValueError(
                f"metric {name!r} needs class scores [batch, classes, ...] and class-index "
                f"targets; got outputs of shape {list(out.shape)} and {y.dtype} targets"
            )
        if name == "accuracy":
            return (out.argmax(1) == y).sum(), y.numel()
        k = min(5, out.shape[1])
        top = out.topk(k, dim=1).indices
        return (top == y.unsqueeze(1)).any(1).sum(), y.numel()
    diff = out.float() - y.float().reshape(out.shape)
    value = diff.square().sum() if name == "mse" else diff.abs().sum()
    return value, diff.numel()
