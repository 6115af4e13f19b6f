"""Several processes: torchrun's environment, the process group, and each process's batches.

specnet does not launch or coordinate processes itself: ``torchrun`` (torch.distributed.run)
starts them and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address;
:func:`setup` joins the process group from that environment (gloo on the CPU, NCCL on CUDA)
and the trainer wraps the model in ``DistributedDataParallel``.

The data order is a pure function of the seed and the epoch (:class:`BatchOrder`). Each global
batch of ``batch_size`` samples is cut into one contiguous shard per process; a process's
loss is weighted by its shard's share of the batch (:func:`loss_weight`), so that the average
of the gradients across processes is the gradient of the global batch's mean loss, whatever
the number of processes, the epoch's last, smaller batch included.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")

__all__ = [
    "BatchOrder",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "gather_objects",
    "in_turn",
    "launched",
    "local_rank",
    "loss_weight",
    "rank",
    "setup",
    "shard",
    "shutdown",
    "world_size",
    "world_size_mismatch",
]


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is set up."""
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once) and return the device this process trains on.

    Outside torchrun, returns ``device`` unchanged. Under torchrun, uses NCCL when ``device``
    is CUDA (each process then takes the GPU ``cuda:LOCAL_RANK``, whatever index ``device``
    names) and gloo otherwise.
    """
    if not launched() and not active():
        return device
    cuda = device.type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        count = torch.cuda.device_count()
        if local >= count:
            raise ValueError(
                f"process {local} of this machine has no GPU: {count} visible; start at most "
                f"{count} processes per machine (--nproc / torchrun --nproc-per-node)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
        atexit.register(_at_exit)
    return device


def shutdown() -> None:
    """Leave the process group, if one is set up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _at_exit() -> None:
    """Leave the group together: a gloo process that exits while another still runs (rank 0
    saving, say) can abort in the group's threads. A peer that died or hangs is waited for a
    minute at most."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "gloo":
        with contextlib.suppress(RuntimeError):
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
    shutdown()


def barrier() -> None:
    if active():
        dist.barrier()


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def in_turn(read: Callable[[], T]) -> T:
    """``read()`` in every process: rank 0 first, then each machine's first, then the rest.

    For data sets that download on first use: rank 0 fetches into a folder shared by the
    machines; a machine with its own folder fetches once too; the others find the files.
    """
    if not active():
        return read()
    first, local_first = rank() == 0, local_rank() == 0
    result = read() if first else None
    barrier()
    if not first and local_first:
        result = read()
    barrier()
    if not first and not local_first:
        result = read()
    return cast(T, result)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the processes, in place (nothing to do for one process)."""
    if active():
        dist.all_reduce(t)
    return t


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (pickled; for small objects like RNG states)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` in every process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
