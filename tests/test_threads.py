"""``train.threads``: the thread count is measured on the run's first batch, kept on resume, and
fixed when the spec says so."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import specnet
from specnet._train import threads
from specnet._train.checkpoint import latest_checkpoint, load_state, model_hash, save_weights
from specnet._train.inference import trainer_with_weights
from specnet._train.runs import train_run


class _Clock:
    """A clock that a step advances by its thread count's cost."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.now = 0.0
        self.cost = cost

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.cost[torch.get_num_threads()]


@pytest.mark.parametrize(
    ("cost", "chosen"),
    [
        ({1: 1.0, 2: 3.0}, 1),  # a busy machine: the second thread waits for a taken core
        ({1: 1.0, 2: 0.5}, 2),  # an idle machine and a large model
        ({1: 1.0, 2: 0.95}, 1),  # within 10%: fewer threads suffer less when the load changes
    ],
)
def test_the_fastest_count_is_chosen_and_torch_is_left_as_it_was(
    cost: dict[int, float], chosen: int
) -> None:
    before = torch.get_num_threads()
    clock = _Clock(cost)
    got, medians = threads.choose(clock.step, [1, 2], clock=clock)
    assert got == chosen
    assert medians == pytest.approx({1: cost[1], 2: cost[2]})
    assert torch.get_num_threads() == before


def test_a_count_whose_steps_now_and_then_wait_for_a_core_is_not_chosen() -> None:
    # A busy machine: most steps of two threads take half of one thread's time, but one in
    # four waits for a descheduled thread. Two threads' median step is faster; their mean,
    # what an epoch costs, is slower.
    clock = _Clock({1: 0.01, 2: 0.005})
    two_thread_steps = 0

    def step() -> None:
        nonlocal two_thread_steps
        clock.step()
        if torch.get_num_threads() == 2:
            two_thread_steps += 1
            clock.now += 0.045 if two_thread_steps % 4 == 0 else 0.0

    got, means = threads.choose(step, [1, 2], clock=clock)
    assert got == 1
    assert means[1] == pytest.approx(0.01) and means[2] > 0.015
    assert two_thread_steps > 2 * threads.ROUNDS  # a sample is several steps, not one


def test_measuring_stops_after_its_budget() -> None:
    clock = _Clock({1: 2.0, 2: 2.0})
    calls = 0

    def step() -> None:
        nonlocal calls
        calls += 1
        clock.step()

    threads.choose(step, [1, 2], clock=clock)
    assert calls == 1 + 2  # one untimed run, then one timed round: over budget


MS = 2**-10  # about a millisecond, exact in binary: sums of steps land where a sample ends


def _counting(clock: _Clock) -> tuple[dict[int, int], Callable[[], None]]:
    steps: dict[int, int] = {}

    def step() -> None:
        n = torch.get_num_threads()
        steps[n] = steps.get(n, 0) + 1
        clock.step()

    return steps, step


def test_a_count_far_slower_than_the_fastest_is_measured_no_more() -> None:
    # A busy machine: a step of two threads waits for a taken core at every operator.
    clock = _Clock({1: MS, 2: 128 * MS})
    steps, step = _counting(clock)
    got, means = threads.choose(step, [1, 2], clock=clock)
    assert got == 1 and means == pytest.approx({1: MS, 2: 128 * MS})
    # One round: the untimed step and one sample of 1 thread, one step of 2 threads.
    assert steps == {1: 1 + math.ceil(threads.SAMPLE_SECONDS / MS), 2: 1}


def test_a_count_a_little_more_than_twice_as_slow_is_dropped_and_twice_as_slow_is_not() -> None:
    per_sample = math.ceil(threads.SAMPLE_SECONDS / (2.25 * MS))
    clock = _Clock({1: MS, 2: 2.25 * MS})
    steps, step = _counting(clock)
    threads.choose(step, [1, 2], clock=clock)
    assert steps[2] == per_sample  # one round
    clock = _Clock({1: MS, 2: 1.75 * MS})
    steps, step = _counting(clock)
    threads.choose(step, [1, 2], clock=clock)
    assert steps[2] == threads.ROUNDS * math.ceil(threads.SAMPLE_SECONDS / (1.75 * MS))


def test_a_dropped_count_is_not_chosen_when_the_others_slow_down_later() -> None:
    # Four threads are dropped after the first round; then the machine gets busy and the
    # counts still measured slow down past four threads' one early mean.
    clock = _Clock({1: MS, 2: 1.05 * MS, 4: 2.5 * MS})
    seen_four = False

    def step() -> None:
        nonlocal seen_four
        n = torch.get_num_threads()
        if n == 4:
            seen_four = True
        elif seen_four:
            clock.cost = {1: 8 * MS, 2: 8 * MS, 4: 8 * MS}
        clock.step()

    got, means = threads.choose(step, [1, 2, 4], clock=clock)
    assert means[4] == pytest.approx(2.5 * MS) and min(means[1], means[2]) > means[4]
    assert got in (1, 2)


def test_the_first_step_of_a_count_that_starts_its_threads_is_left_out() -> None:
    # Two threads' first step starts the second thread (20 ms here), then each takes half a
    # millisecond: counted in, it would make two threads look more than twice as slow.
    clock = _Clock({1: MS, 2: MS / 2})
    started = False

    def step() -> None:
        nonlocal started
        if torch.get_num_threads() == 2 and not started:
            started = True
            clock.now += 20 * MS
        clock.step()

    got, means = threads.choose(step, [1, 2], clock=clock)
    assert got == 2 and means[2] == pytest.approx(MS / 2)


def test_counts_within_reach_of_the_fastest_are_measured_in_every_round() -> None:
    clock = _Clock({1: MS, 2: 1.5 * MS})
    steps, step = _counting(clock)
    assert threads.choose(step, [1, 2], clock=clock)[0] == 1
    assert steps[2] == threads.ROUNDS * math.ceil(threads.SAMPLE_SECONDS / (1.5 * MS))


def test_the_candidates_are_one_a_quarter_a_half_and_all_cores() -> None:
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(16) == [1, 4, 8, 16]


SPEC = """\
input: [16]
model:
  type: Sequential
  layers:
    - {type: Linear, out_features: 16}
    - Dropout
    - {type: Linear, out_features: 4}
train:
  data: {type: Synthetic, samples: 64, test_samples: 16, classes: 4}
  batch_size: 16
  epochs: 2
"""


def test_auto_is_measured_once_recorded_and_kept_by_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda processes_here=1: 2)
    chosen: list[int] = []

    def choose(step: object, counts: list[int], **kw: object) -> tuple[int, dict[int, float]]:
        chosen.append(2)
        return 2, {1: 0.003, 2: 0.002}

    monkeypatch.setattr(threads, "choose", choose)
    spec = specnet.load(SPEC)
    result = train_run(spec, tmp_path / "run", progress=False)
    assert chosen == [2] and result.record["threads"] == 2
    measured = {"1": 3.0, "2": 2.0}  # each count's mean step, in ms
    assert result.record["thread_step_ms"] == measured
    found = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert found is not None and load_state(found.state)["threads"] == 2

    def refuse(*args: object, **kw: object) -> tuple[int, dict[int, float]]:
        raise AssertionError("a resumed run keeps its count")

    monkeypatch.setattr(threads, "choose", refuse)
    longer = specnet.load(SPEC.replace("epochs: 2", "epochs: 3"))
    resumed = train_run(longer, tmp_path / "run", resume=True, progress=False)
    assert resumed.trainer.state.threads == 2
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["threads"] == 2 and record["thread_step_ms"] == measured


def test_measuring_leaves_the_random_state_and_calls_no_loss_of_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda processes_here=1: 2)
    spec = specnet.load(SPEC)
    calls = 0

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return torch.nn.functional.cross_entropy(out, y)

    counts, states = [], []
    for count in ("auto", 1):
        torch.manual_seed(0)
        model = specnet.build(spec)
        trainer = specnet.Trainer(model, loss=loss, batch_size=16, epochs=1, threads=count)
        calls = 0
        x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
        trainer.fit(torch.utils.data.TensorDataset(x, y))
        assert calls == 4  # the four training batches, no more
        counts.append(trainer.state.threads)
        states.append(torch.get_rng_state())  # dropout's draws alone
    assert counts[0] in (1, 2) and counts[1] == 1
    assert torch.equal(states[0], states[1])


def test_a_fixed_count_is_used_while_training_and_restored_after() -> None:
    before = torch.get_num_threads()
    model = torch.nn.Linear(4, 2)
    trainer = specnet.Trainer(model, batch_size=8, threads=1, epochs=1)
    during: list[int] = []
    trainer.on("on_epoch_end", lambda t, row: during.append(torch.get_num_threads()))
    trainer.fit(torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))))
    assert during == [1] and torch.get_num_threads() == before


class _ThreadsSeen(torch.nn.Module):
    """A Linear layer that records torch's thread count at each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        out: torch.Tensor = self.fc(x)
        return out


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """Sets torch's thread count for the test (``torch_threads(n)``); restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _fit_measuring(
    monkeypatch: pytest.MonkeyPatch, count: int = 2
) -> tuple[_ThreadsSeen, specnet.Trainer, torch.utils.data.Dataset[Any]]:
    """A trainer fitted for an epoch with "auto" measured as ``count`` threads (of 2 cores),
    validation included; its model records the thread count of each forward."""
    monkeypatch.setattr(threads, "available_cores", lambda processes_here=1: 2)
    monkeypatch.setattr(threads, "choose", lambda step, counts, **kw: (count, {}))
    model = _ThreadsSeen()
    trainer = specnet.Trainer(model, batch_size=8, epochs=1, device="cpu")
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    trainer.fit(data, val_data=data)
    return model, trainer, data


def test_evaluation_and_prediction_use_the_count_training_measured(
    monkeypatch: pytest.MonkeyPatch, torch_threads: Callable[[int], None]
) -> None:
    # A run's last evaluation (its test split) with torch's threads instead of the measured
    # count waited for a busy core at every operator.
    torch_threads(2)
    model, trainer, data = _fit_measuring(monkeypatch, 1)
    model.seen.clear()
    trainer.evaluate(data)
    trainer.predict(torch.randn(8, 4))
    assert model.seen == [1, 1, 1] and torch.get_num_threads() == 2


def test_the_checks_before_training_run_on_one_thread_until_the_count_is_measured(
    monkeypatch: pytest.MonkeyPatch, torch_threads: Callable[[int], None]
) -> None:
    # The checks' forward passes (the model's output against the targets) with torch's two
    # threads took 0.11-0.18 s on a busy two-core machine, with one next to nothing.
    torch_threads(2)
    model, _, _ = _fit_measuring(monkeypatch)
    # The checks on the training and validation data, then the epoch: 2 batches and the
    # validation's 2.
    assert model.seen == [1, 1, 2, 2, 2, 2] and torch.get_num_threads() == 2


def test_the_checks_use_a_known_or_fixed_count_and_torchs_where_auto_is_not_measured() -> None:
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    auto = specnet.Trainer(torch.nn.Linear(4, 2), batch_size=8, device="cpu")
    assert auto._checking_threads(data) == 1
    assert auto._checking_threads(loader) is None  # not measured: torch's count stands
    fixed = specnet.Trainer(torch.nn.Linear(4, 2), batch_size=8, threads=3, device="cpu")
    assert fixed._checking_threads(data) == 3
    auto.state.threads = 2  # a resumed run's
    assert auto._checking_threads(data) == 2


def test_a_fixed_count_is_used_by_evaluation_before_any_training(
    torch_threads: Callable[[int], None],
) -> None:
    torch_threads(2)
    model = _ThreadsSeen()
    trainer = specnet.Trainer(model, batch_size=8, threads=1, device="cpu")
    trainer.evaluate(torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))))
    trainer.predict(torch.randn(8, 4))
    assert model.seen == [1, 1] and torch.get_num_threads() == 2


def test_evaluating_a_runs_weights_uses_the_count_its_run_recorded(
    tmp_path: Path, torch_threads: Callable[[int], None]
) -> None:
    # specnet evaluate and specnet predict: a trainer on saved weights, threads: auto.
    path = tmp_path / "net.yaml"
    path.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\ntrain: {device: cpu}\n")
    spec = specnet.load(path)
    run = tmp_path / "run"
    run.mkdir()
    save_weights(run / "model.safetensors", specnet.build(spec), model_hash(spec.data))
    (run / "run.json").write_text(json.dumps({"threads": 3}))
    torch_threads(4)
    assert trainer_with_weights(spec, run / "model.safetensors").state.threads == 3
    torch_threads(2)  # another machine's two cores, or OMP_NUM_THREADS=2: at most torch's count
    assert trainer_with_weights(spec, run / "model.safetensors").state.threads == 2
    (run / "run.json").write_text(json.dumps({"threads": None}))  # a run on a GPU
    assert trainer_with_weights(spec, run).state.threads is None
    (run / "run.json").unlink()  # a lone weights file
    assert trainer_with_weights(spec, run / "model.safetensors").state.threads is None


def test_auto_measures_no_more_threads_than_torchs_count(
    monkeypatch: pytest.MonkeyPatch, torch_threads: Callable[[int], None]
) -> None:
    # OMP_NUM_THREADS=2 or torch.set_num_threads(2) on an 8-core machine is the caller's limit.
    monkeypatch.setattr(threads, "available_cores", lambda processes_here=1: 8)
    measured: list[list[int]] = []

    def choose(step: object, counts: list[int], **kw: object) -> tuple[int, dict[int, float]]:
        measured.append(list(counts))
        return counts[-1], {}

    monkeypatch.setattr(threads, "choose", choose)
    torch_threads(2)
    trainer = specnet.Trainer(torch.nn.Linear(4, 2), batch_size=8, epochs=1, device="cpu")
    trainer.fit(torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))))
    assert measured == [[1, 2]] and trainer.state.threads == 2
    torch_threads(1)
    one = specnet.Trainer(torch.nn.Linear(4, 2), batch_size=8, epochs=1, device="cpu")
    one.fit(torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))))
    assert measured == [[1, 2]] and one.state.threads == 1  # nothing left to measure


class _Stream(torch.utils.data.IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(0)
        for i in range(24):
            yield torch.randn(4, generator=g), torch.tensor(i % 2)


class _Uncopyable(torch.nn.Linear):
    def __deepcopy__(self, memo: object) -> None:
        raise TypeError("cannot pickle '_thread.lock' object")


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (torch.nn.Linear(4, 2), _Stream()),  # not read ahead of its epochs
        (
            _Uncopyable(4, 2),
            torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))),
        ),
    ],
    ids=["iterable-data", "a-model-that-cannot-be-copied"],
)
def test_auto_keeps_torchs_count_where_it_cannot_measure(
    monkeypatch: pytest.MonkeyPatch,
    torch_threads: Callable[[int], None],
    model: torch.nn.Module,
    data: torch.utils.data.Dataset[Any],
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda processes_here=1: 2)
    torch_threads(2)
    trainer = specnet.Trainer(model, batch_size=8, epochs=1, device="cpu")
    trainer.fit(data)
    assert trainer.state.threads == 2
    assert trainer.state.step == (3 if isinstance(data, _Stream) else 2)  # batches of 8


def test_training_on_no_samples_is_refused_before_the_first_step() -> None:
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    for count in ("auto", 1):
        trainer = specnet.Trainer(torch.nn.Linear(4, 2), batch_size=8, threads=count)
        with pytest.raises(specnet.SpecnetError, match="has no samples"):
            trainer.fit(empty)
        assert trainer.state.step == 0


def test_the_docs_quote_the_policys_own_numbers() -> None:
    # The numbers are declared once (AUTO_THREADS); the prose that explains them must follow.
    text = (Path(__file__).parents[1] / "docs" / "spec-format.md").read_text("utf-8")
    section = " ".join(text[text.index("### Threads") : text.index("### Data sets")].split())
    words = {1.0: "a second", 2.0: "twice as slow"}
    assert f"within {threads.TOLERANCE:.0%}" in section
    assert words[threads.DROPPED_AT] in section
    assert f"{threads.SAMPLE_SECONDS * 1000:g} ms" in section
    assert words[threads.BUDGET_SECONDS] in section
