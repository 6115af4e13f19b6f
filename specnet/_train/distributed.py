"""Where training runs: one process, or several started by torchrun, behind one interface.

A :class:`Strategy` is what the trainer does differently in several processes: how it wraps
the model, which share of each batch a process takes and how its loss is weighted, how losses
and metrics are summed over the processes, and how the processes agree. :func:`strategy_for`
picks :class:`SingleProcess` or :class:`DistributedDataParallelStrategy` from the environment.

specnet does not coordinate processes itself: ``torchrun`` (torch.distributed.run) starts
them and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address (:func:`launch`
runs torchrun for ``specnet train --nproc N``); the strategy joins the process group from that
environment (gloo on the CPU, NCCL on CUDA) and wraps the model in ``DistributedDataParallel``.

The data order is a pure function of the seed and the epoch (:class:`BatchOrder`). Each global
batch of ``batch_size`` samples is cut into one contiguous shard per process; a process's
loss is weighted by its shard's share of the batch (:func:`loss_weight`), so that the average
of the gradients across processes is the gradient of the global batch's mean loss, whatever
the number of processes, the epoch's last, smaller batch included.

A process that fails while the others wait in a collective call leaves them waiting, then
failing with the backend's error once it exits. Where the processes can reach different
verdicts (rank 0 loads the data first; a process may evaluate no batch), they exchange them
first (:meth:`Strategy.agree`): an error a user can cause, in any process, is raised in all.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import datetime
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from specnet._front.errors import SpecnetError, UsageError

from .errors import TrainingError

T = TypeVar("T")

__all__ = [
    "BatchOrder",
    "DistributedDataParallelStrategy",
    "SingleProcess",
    "Strategy",
    "end_process",
    "launch",
    "launched",
    "leave",
    "loss_weight",
    "shard",
    "strategy_for",
    "world_size_mismatch",
]


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _active() -> bool:
    """Whether a process group of more than one process is set up."""
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


class Strategy(abc.ABC):
    """How the trainer trains in this process and, through it, with the others.

    :attr:`device` is the device this process trains on; :attr:`rank` is its place among
    :attr:`world_size` processes.
    """

    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0: the one that writes files and prints."""
        return self.rank == 0

    @abc.abstractmethod
    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that training calls (evaluation calls ``model`` itself)."""

    @abc.abstractmethod
    def no_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Around a backward pass: unless ``sync``, gradients stay in this process (an
        accumulation step that no optimizer step follows)."""

    @abc.abstractmethod
    def loss_weight(self, order: object, batch_index: int, reduction: str) -> float | None:
        """The factor for this process's loss on a batch of ``order`` (None: as it is)."""

    @abc.abstractmethod
    def check_batches(self, order: object, model: nn.Module) -> None:
        """Refuse batches that leave a process too few samples for the model."""

    @abc.abstractmethod
    def mean_loss_(self, total: torch.Tensor) -> torch.Tensor:
        """Turn this process's sum of weighted losses into the global batches' (in place)."""

    @abc.abstractmethod
    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the processes, in place."""

    @abc.abstractmethod
    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj``, in every process."""

    @abc.abstractmethod
    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (pickled: for small objects)."""

    @abc.abstractmethod
    def agree(self, work: Callable[[], T]) -> T:
        """``work()`` in every process; a :class:`SpecnetError` in any is raised in all."""

    @abc.abstractmethod
    def in_turn(self, read: Callable[[], T]) -> T:
        """``read()`` in every process: rank 0 first, then each machine's first, then the rest.

        For data sets that download on first use: rank 0 fetches into a folder shared by the
        machines; a machine with its own folder fetches once too; the others find the files.
        An error in a turn is raised in every process, before the next turn.
        """

    @abc.abstractmethod
    def close(self, *, together: bool) -> None:
        """Leave the processes: ``together``, once all arrive (so none is stopped while another
        still writes), or at once (after an error only this process met)."""


class SingleProcess(Strategy):
    """Training in this process alone."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rank = 0
        self.world_size = 1

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def no_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def loss_weight(self, order: object, batch_index: int, reduction: str) -> float | None:
        return None

    def check_batches(self, order: object, model: nn.Module) -> None:
        return

    def mean_loss_(self, total: torch.Tensor) -> torch.Tensor:
        return total

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def broadcast(self, obj: T) -> T:
        return obj

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def agree(self, work: Callable[[], T]) -> T:
        return work()

    def in_turn(self, read: Callable[[], T]) -> T:
        return read()

    def close(self, *, together: bool) -> None:
        return


class DistributedDataParallelStrategy(Strategy):
    """One of several processes started by torchrun, training through DistributedDataParallel.

    Joins torchrun's process group (once). On CUDA each process takes the GPU
    ``cuda:LOCAL_RANK``, whatever index ``device`` names, and the processes talk through NCCL;
    elsewhere through gloo. ``batch_size`` is the global batch, shared by the processes.
    """

    def __init__(self, device: torch.device) -> None:
        cuda = device.type == "cuda"
        if cuda:
            local, count = _local_rank(), torch.cuda.device_count()
            here = int(os.environ.get("LOCAL_WORLD_SIZE", local + 1))
            if here > count:  # every process of the machine finds it: the same verdict
                raise TrainingError(
                    f"this machine runs {here} processes but has {count} GPU(s); start at most "
                    f"{count} processes per machine (--nproc / torchrun --nproc-per-node)"
                )
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
            atexit.register(leave)
        self.device = device
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._ddp: DistributedDataParallel | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device] if self.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(model, device_ids=ids)
        return self._ddp

    def no_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        if sync or self._ddp is None:
            return contextlib.nullcontext()
        return self._ddp.no_sync()

    def loss_weight(self, order: object, batch_index: int, reduction: str) -> float | None:
        if not isinstance(order, BatchOrder):  # the caller's loader: each process its own
            return None
        return loss_weight(
            order.n, order.batch_size, batch_index, self.world_size, self.rank, reduction
        )

    def check_batches(self, order: object, model: nn.Module) -> None:
        if not isinstance(order, BatchOrder):
            return
        share, size = order.smallest_share()
        if share < 2 and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
        ):
            raise TrainingError(
                f"with {self.world_size} processes, a batch of {size} samples (of {order.n}, in "
                f"batches of {order.batch_size}) leaves a process {share} sample(s), and the "
                "model's BatchNorm layers need at least 2 per process in training; choose a "
                "batch_size for which every batch, the epoch's last included, has at least "
                f"{2 * self.world_size} samples"
            )

    def mean_loss_(self, total: torch.Tensor) -> torch.Tensor:
        # The processes' weighted shares sum to world_size x the global batches' mean.
        dist.all_reduce(total)
        return total.div_(self.world_size)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    def broadcast(self, obj: T) -> T:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def agree(self, work: Callable[[], T]) -> T:
        result: T | None = None
        error = None
        try:
            result = work()
        except SpecnetError as exc:
            error = exc
        self._verdict(error)
        return cast(T, result)

    def in_turn(self, read: Callable[[], T]) -> T:
        first, local_first = self.rank == 0, _local_rank() == 0
        result: T | None = None
        for turn in (first, not first and local_first, not first and not local_first):
            error = None
            if turn:
                try:
                    result = read()
                except SpecnetError as exc:
                    error = exc
            self._verdict(error)
        return cast(T, result)

    def _verdict(self, error: SpecnetError | None) -> None:
        """Exchange each process's verdict; raise the first error (by rank) in every one."""
        verdicts = self.gather(error)
        failed = next((r for r, e in enumerate(verdicts) if e is not None), None)
        if failed is None:
            return
        if failed == self.rank and error is not None:
            raise error
        raise verdicts[failed]

    def close(self, *, together: bool) -> None:
        if together:
            leave()
        elif dist.is_initialized():
            dist.destroy_process_group()


def strategy_for(device: torch.device) -> Strategy:
    """DistributedDataParallel in a process that torchrun started as one of several (or in an
    existing process group of several), else this process alone."""
    if launched() or _active():
        return DistributedDataParallelStrategy(device)
    return SingleProcess(device)


def _local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def leave() -> None:
    """Leave the process group, if this process is in one, once every process arrives.

    A gloo process that exits while another still runs (rank 0 saving, say) can abort in the
    group's threads. A gloo peer that died or hangs is waited for a minute at most.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    with contextlib.suppress(RuntimeError):
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
        else:
            dist.barrier()
    dist.destroy_process_group()


def end_process(code: int) -> None:
    """End a process of a torchrun job with exit status ``code``, with the others.

    Its files are written and closed, its errors reported. It leaves the process group
    together with the others, then exits at once, rather than through the interpreter's
    teardown: torchrun stops the others as soon as one fails, and gloo's threads can abort a
    process during that teardown.
    """
    leave()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def launch(nproc: int, args: Sequence[str]) -> None:
    """``python -m specnet ARGS`` in ``nproc`` processes, through torchrun in this process.

    torchrun's launcher forwards signals to the processes and stops them all when one fails;
    each reports its own errors. Raises :class:`TrainingError` when they failed or were stopped,
    :class:`UsageError` in a process that torchrun started.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if launched():
        raise UsageError("--nproc starts torchrun itself; leave it out under torchrun")
    command = ["--standalone", f"--nproc-per-node={nproc}", "-m", "specnet", *args]
    # torchrun would set 1 thread per process; share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(get_args_parser().parse_args(command))  # type: ignore[no-untyped-call]
    except SignalException as exc:  # the processes are stopped
        raise TrainingError(f"stopped by {exc.sigval.name}") from None
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        raise TrainingError(
            f"{len(exc.failures)} of {nproc} processes failed (exit codes "
            f"{', '.join(map(str, codes))})"
        ) from None


def shard(batch: int, world: int, rank: int) -> tuple[int, int]:
    """The slice ``[start, end)`` of a batch of ``batch`` samples that process ``rank`` takes.

    Contiguous, as even as possible, the larger shards first (so rank 0's is never empty).
    """
    base, extra = divmod(batch, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def loss_weight(
    n: int, batch_size: int, batch_index: int, world: int, rank: int, reduction: str = "mean"
) -> float:
    """The factor for process ``rank``'s loss on batch ``batch_index`` of an epoch.

    DistributedDataParallel averages the gradients of the processes. With a ``mean`` loss,
    weighting each process's loss by ``shard size * world / global batch`` turns that average
    into the gradient of the global batch's mean; a ``sum`` loss is weighted by ``world``.
    """
    size = min(batch_size, n - batch_index * batch_size)
    start, end = shard(size, world, rank)
    if reduction == "sum":
        return float(world) if end > start else 0.0
    return (end - start) * world / size


def world_size_mismatch(state: Mapping[str, Any], world: int, what: str) -> str | None:
    """Why a trainer ``state`` (``what``: where it comes from) cannot continue in ``world``
    processes, or None when it can: each process's random state is part of it."""
    saved = int(state.get("world_size", 1))
    if saved == world:
        return None
    return (
        f"{what} was written by {_processes(saved)} and this run has {_processes(world)}: "
        f"resume it with {_processes(saved)} in all (--nproc {saved}, or torchrun); each "
        "process's random state is part of the run"
    )


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 0x9E3779B1 + epoch * 0x85EBCA6B + 0x5BD1E995) % (2**63)


class BatchOrder(Sampler[list[int]]):
    """This process's batches of sample indices for one epoch; a pure function of seed and epoch.

    The global order is ``torch.randperm(n)`` from a generator seeded with (seed, epoch), or
    ``0..n-1`` without shuffling. Global batch ``b`` is ``order[b*B:(b+1)*B]``; this process
    yields its :func:`shard` of each. Set :attr:`epoch` before iterating, and :attr:`skip` to
    start after that many batches (a resumed epoch). When a batch has fewer samples than there
    are processes, a process without a share gets the batch's first sample, with a loss weight
    of 0 (training), or no batch at all (``pad=False``, evaluation).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        world: int = 1,
        rank: int = 0,
        pad: bool = True,
    ) -> None:
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.world = world
        self.rank = rank
        self.pad = pad
        self.epoch = 0
        self.skip = 0

    def order(self) -> torch.Tensor:
        """The global order of the samples in :attr:`epoch`."""
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g)

    def spans(self) -> Iterator[tuple[int, int]]:
        """``(start, end)``: where this process's batches lie in :meth:`order`.

        Resets :attr:`skip` to 0.
        """
        skip, self.skip = self.skip, 0
        for b in range(skip, len(self)):
            first = b * self.batch_size
            start, end = shard(min(self.batch_size, self.n - first), self.world, self.rank)
            if end > start:
                yield first + start, first + end
            elif self.pad:
                yield first, first + 1

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start, end in self.spans():
            yield order[start:end].tolist()

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def smallest_share(self) -> tuple[int, int]:
        """The fewest samples a process gets from a batch, and that batch's size."""
        last = self.n - (len(self) - 1) * self.batch_size
        size = min(self.batch_size, last)
        start, end = shard(size, self.world, self.world - 1)
        return end - start, size
