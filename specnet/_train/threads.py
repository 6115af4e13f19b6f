"""How many CPU threads a training process uses (``train.threads``).

torch starts one intra-op thread per core, and each operator waits for all of them. On a machine
whose cores are busy with other processes, a thread that is not scheduled holds every operator
up: a small CNN trained 8-17x slower with torch's two threads than with one on a busy two-core
machine, while one thread cost nothing when the machine was idle (the model's operators are too
small to share). Larger models gain from more threads on an idle machine and lose on a busy one.
No rule of the model's size can see the load, so ``threads: auto`` measures: it times the
training step (forward, loss, backward) of the run's first batch on a copy of the model, with
one thread and with more, interleaved, and keeps the fastest (the fewest threads within
:data:`TOLERANCE` of it, since fewer threads suffer less when the load changes later).
A count's cost is its mean time per step over samples of several steps each
(:data:`SAMPLE_SECONDS`): on a busy machine most steps of two threads run as fast as one
thread's and a few wait for a descheduled thread, so a median of single steps would miss the
waits that make two threads slower. Evaluation and prediction use the count training uses.
:func:`choose` does the measuring; the trainer gives it the step and records the count in
its state, so a resumed run keeps the count it started with (float results depend on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "BUDGET_SECONDS",
    "ROUNDS",
    "SAMPLE_SECONDS",
    "TOLERANCE",
    "available_cores",
    "candidates",
    "choose",
]

TOLERANCE = 0.10
"""A thread count within this share of the fastest one's time counts as as fast."""

BUDGET_SECONDS = 1.0
"""After the first timed round, rounds stop once the measuring has taken this long."""

ROUNDS = 4
"""Timed rounds at most (each times a sample of every candidate, in turn)."""

SAMPLE_SECONDS = 0.025
"""A timed sample repeats the step until it has taken this long (one step at least)."""


def available_cores(processes_here: int = 1) -> int:
    """The cores this process may run on (its CPU affinity), shared by the training processes
    on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes_here))


def candidates(cores: int) -> list[int]:
    """The thread counts measured: 1, a quarter and a half of the cores, and all of them."""
    return sorted({max(1, n) for n in (1, cores // 4, cores // 2, cores)})


def choose(
    step: Callable[[], object],
    counts: Sequence[int],
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[int, dict[int, float]]:
    """The thread count among ``counts`` that runs ``step`` fastest (the fewest within
    :data:`TOLERANCE` of the fastest), and each count's mean seconds per step.

    Each count runs ``step`` once untimed (warming caches and torch's thread pool), then the
    counts take turns in timed rounds, at least one and at most :data:`ROUNDS`, stopping early
    once :data:`BUDGET_SECONDS` have gone; in a round each count runs ``step`` until
    :data:`SAMPLE_SECONDS` have gone. torch's thread count is left as it was.
    """
    if len(counts) == 1:
        return counts[0], {}
    before = torch.get_num_threads()
    spent = dict.fromkeys(counts, 0.0)
    steps = dict.fromkeys(counts, 0)
    try:
        for n in counts:
            torch.set_num_threads(n)
            step()
        started = clock()
        for _ in range(ROUNDS):
            for n in counts:
                torch.set_num_threads(n)
                t0 = clock()
                while True:
                    step()
                    steps[n] += 1
                    now = clock()
                    if now - t0 >= SAMPLE_SECONDS:
                        break
                spent[n] += now - t0
            if clock() - started > BUDGET_SECONDS:
                break
    finally:
        torch.set_num_threads(before)
    means = {n: spent[n] / steps[n] for n in counts}
    fastest = min(means.values())
    chosen = min(n for n, t in means.items() if t <= fastest * (1 + TOLERANCE))
    return chosen, means
