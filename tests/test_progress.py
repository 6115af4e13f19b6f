"""The progress bar: one bar for the run with its ETA, a running loss read from the device only
when the bar is refreshed, and the epoch lines above it."""

from __future__ import annotations

import io
import re

import torch

import specnet
from specnet._train.runs import Progress


class _Clock:
    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _fit(bar: Progress, epochs: int = 3) -> tuple[specnet.Trainer, list[float]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    losses: list[float] = []
    trainer = specnet.Trainer(
        model,
        batch_size=8,
        epochs=epochs,
        optimizer={"type": "SGD", "lr": 0.5},
        callbacks=[bar],
        log_every=0,
        threads=1,
    )
    trainer.on("on_batch_end", lambda t, loss: losses.append(float(loss)))
    x, y = torch.randn(80, 8), torch.randint(0, 3, (80,))
    trainer.fit(torch.utils.data.TensorDataset(x, y))
    return trainer, losses


def test_the_running_loss_is_the_mean_since_the_last_refresh_read_once_per_refresh() -> None:
    out = io.StringIO()
    # the clock reads 0.25 s later each batch: a refresh every 4 batches
    bar = Progress(file=out, tty=True, refresh_seconds=1.0, clock=_Clock(0.25))
    trainer, losses = _fit(bar)
    assert trainer.state.step == 30
    assert bar.reads == 30 // 4  # the device is read at refreshes only, not once per batch
    shown = [float(v) for v in re.findall(r"loss=([0-9.e+-]+)", out.getvalue())]
    expected = [sum(losses[i : i + 4]) / 4 for i in range(0, 28, 4)]
    assert shown, out.getvalue()
    for value in shown:  # each value shown is the mean of one window of 4 batches
        assert any(abs(value - e) <= 5e-4 * max(1.0, abs(e)) for e in expected), (value, expected)
    assert f"{expected[-1]:.4g}" in out.getvalue()  # the last window is shown, not a stale one


def test_one_bar_for_the_run_with_its_eta_and_epoch_lines_above_it() -> None:
    out = io.StringIO()
    bar = Progress(file=out, tty=True, refresh_seconds=0.0)
    _fit(bar)
    text = out.getvalue()
    assert re.search(r"epoch \d/3: .*\| *\d+/30 \[[0-9:]+<[0-9:?]+", text), text  # done/total, ETA
    assert [line for line in text.splitlines() if line.startswith("epoch 3/3  train_loss")]


def test_without_a_terminal_there_is_no_bar_but_the_epoch_lines() -> None:
    out = io.StringIO()
    bar = Progress(file=out)  # a StringIO is no terminal
    _fit(bar, epochs=2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("epoch ") for line in lines)
    assert bar.reads == 0
