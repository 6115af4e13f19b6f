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
waits that make two threads slower. A count far slower than the fastest after a round
(:data:`DROPPED_AT`) is measured no more, nor chosen: on a busy machine a step of two threads
can take a hundred times one thread's, and more rounds of it would cost the run a second to
confirm it. Evaluation and prediction use the count training uses.
:func:`choose` does the measuring; the trainer gives it the step and records the count in
its state, so a resumed run keeps the count it started with (float results depend on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

from specnet._front.trainspec import AUTO_THREADS

__all__ = [
    "BUDGET_SECONDS",
    "DROPPED_AT",
    "ROUNDS",
    "SAMPLE_SECONDS",
    "TOLERANCE",
    "available_cores",
    "candidates",
    "choose",
]

# The policy's numbers are declared, and described, with the setting (AutoThreads).
TOLERANCE = AUTO_THREADS.tolerance
BUDGET_SECONDS = AUTO_THREADS.budget_seconds
DROPPED_AT = AUTO_THREADS.dropped_at
ROUNDS = AUTO_THREADS.rounds
SAMPLE_SECONDS = AUTO_THREADS.sample_seconds


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
    :data:`TOLERANCE` of the fastest), and each count's mean seconds per step (a count dropped
    early: over the rounds it was measured in).

    ``step`` runs once untimed with the first count (the first call's costs: allocations,
    autograd's graph), then the counts take turns in timed rounds, at least one and at most
    :data:`ROUNDS`, stopping early once :data:`BUDGET_SECONDS` have gone or one count is left.
    In a round each count still measured runs ``step`` until :data:`SAMPLE_SECONDS` have gone
    (the other counts' first step, which starts their threads, is left out of their mean when
    the sample has more), and a count more than :data:`DROPPED_AT` times slower than the
    fastest is measured no more. The choice is among the counts measured to the end. torch's
    thread count is left as it was.
    """
    if len(counts) == 1:
        return counts[0], {}
    before = torch.get_num_threads()
    spent = dict.fromkeys(counts, 0.0)
    steps = dict.fromkeys(counts, 0)
    measured = list(counts)
    try:
        torch.set_num_threads(counts[0])
        step()
        started = clock()
        for _ in range(ROUNDS):
            for n in measured:
                torch.set_num_threads(n)
                t0 = clock()
                first = 0.0
                k = 0
                while True:
                    step()
                    k += 1
                    now = clock()
                    if k == 1:
                        first = now - t0
                    if now - t0 >= SAMPLE_SECONDS:
                        break
                if steps[n] == 0 and n != counts[0] and k > 1:
                    spent[n] += now - t0 - first
                    steps[n] += k - 1
                else:
                    spent[n] += now - t0
                    steps[n] += k
            fastest = min(spent[n] / steps[n] for n in measured)
            measured = [n for n in measured if spent[n] / steps[n] <= fastest * DROPPED_AT]
            if len(measured) == 1 or clock() - started > BUDGET_SECONDS:
                break
    finally:
        torch.set_num_threads(before)
    means = {n: spent[n] / steps[n] for n in counts}
    fastest = min(means[n] for n in measured)
    chosen = min(n for n in measured if means[n] <= fastest * (1 + TOLERANCE))
    return chosen, means
