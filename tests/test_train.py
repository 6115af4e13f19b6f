"""specnet.Trainer on hand-written modules: the tutorials' loop, hooks, schedules, precision,
accumulation, clipping, and stopping on a loss that is not finite."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import specnet
from specnet import Callback, Trainer, TrainSpec
from specnet._front.registry import schedulers
from specnet._front.trainspec import CLASS_SCORES, METRICS, SAME_SIZE
from specnet._train.checkpoint import Checkpointer, latest_checkpoint, load_state, load_weights
from specnet._train.errors import NonFiniteLossError, TrainingError


class SimpleNN(nn.Module):
    """The tutorials' SimpleNN (seed 004), sized for the blobs below."""

    def __init__(self, input_size: int = 4, hidden_size: int = 16, output_size: int = 2) -> None:
        super().__init__()
        self.layer1 = nn.Linear(input_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.layer1(x))
        out: torch.Tensor = self.layer2(x)
        return out


def blobs(n: int = 256, seed: int = 0) -> TensorDataset:
    """Two Gaussian classes, 4 features: separable, learnt in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + (y[:, None] * 2 - 1) * 1.5
    return TensorDataset(x, y)


def test_trains_a_plain_module_like_the_tutorials() -> None:
    torch.manual_seed(0)
    model = SimpleNN()
    trainer = Trainer(
        model,
        loss="CrossEntropyLoss",
        optimizer={"type": "SGD", "lr": 0.05, "momentum": 0.9},
        epochs=4,
        batch_size=16,
        metrics=["accuracy", "top5_accuracy"],
        device="cpu",
    )
    history = trainer.fit(blobs(), blobs(128, seed=1))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["step"] for r in history] == [16, 32, 48, 64]
    assert set(history[0]) == {
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_top5_accuracy",
        "lr",
        "seconds",
    }
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.9
    assert history[-1]["val_top5_accuracy"] == 1.0  # 2 classes: top-k is top-2
    result = trainer.evaluate(blobs(128, seed=1))
    assert result == pytest.approx(
        {k.removeprefix("val_"): v for k, v in history[-1].items() if k.startswith("val_")}
    )
    preds = trainer.predict(blobs(128, seed=1).tensors[0])
    assert preds.shape == (128, 2)
    assert model.training  # evaluate and predict restore the mode


def test_accepts_torch_objects_and_loaders() -> None:
    torch.manual_seed(0)
    model = SimpleNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer = Trainer(
        model,
        loss=nn.functional.cross_entropy,
        optimizer=opt,
        schedule=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
        epochs=2,
        device="cpu",
    )
    loader = DataLoader(blobs(), batch_size=32, shuffle=True)
    history = trainer.fit(loader)
    assert trainer.optimizer is opt
    assert [r["lr"] for r in history] == [0.01, 0.005]
    assert "val_loss" not in history[0]


def test_hooks_run_in_the_documented_order() -> None:
    calls: list[str] = []

    class Recorder(Callback):
        def on_fit_start(self, trainer: Trainer) -> None:
            calls.append("fit_start")

        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            calls.append(f"epoch_start {epoch}")

        def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
            assert loss.requires_grad is False
            calls.append("batch")

        def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
            calls.append(f"log {row['step']}")

        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
            calls.append(f"epoch_end {row['epoch']}")

        def on_fit_end(self, trainer: Trainer) -> None:
            calls.append("fit_end")

    trainer = Trainer(SimpleNN(), epochs=2, batch_size=32, log_every=3, callbacks=[Recorder()])
    seen: list[int] = []
    trainer.on("on_epoch_end", lambda t, row: seen.append(t.epoch))
    trainer.fit(blobs(96))
    assert calls == [
        "fit_start",
        "epoch_start 0",
        "batch",
        "batch",
        "log 3",
        "batch",
        "epoch_end 1",
        "epoch_start 1",
        "batch",
        "batch",
        "log 6",
        "batch",
        "epoch_end 2",
        "fit_end",
    ]
    assert seen == [1, 2]  # functions run after callback objects; epochs completed
    assert [r["step"] for r in trainer.log] == [3, 6]
    with pytest.raises(ValueError, match="unknown hook 'on_step'"):
        trainer.on("on_step", lambda t: None)


def test_gradient_accumulation_equals_a_larger_batch() -> None:
    data = blobs(8)

    def train(batch_size: int, accum: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = SimpleNN()
        trainer = Trainer(
            model,
            optimizer={"type": "SGD", "lr": 0.5},
            batch_size=batch_size,
            grad_accum_steps=accum,
            seed=None,
        )
        trainer.fit(DataLoader(data, batch_size=batch_size))  # same order for both
        assert trainer.step == 1
        return model.state_dict()

    big, accumulated = train(8, 1), train(4, 2)
    for k in big:
        assert torch.allclose(big[k], accumulated[k], atol=1e-6), k


def test_leftover_accumulation_steps_at_the_epoch_end() -> None:
    trainer = Trainer(SimpleNN(), batch_size=10, grad_accum_steps=4, epochs=2)
    trainer.fit(blobs(50))  # 5 batches: a step after 4, and one for the last
    assert trainer.step == 4


def test_clip_grad_norm_bounds_the_update() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(8, 4) * 100
    trainer = Trainer(
        model, optimizer={"type": "SGD", "lr": 1.0}, batch_size=8, clip_grad_norm=0.01, seed=None
    )
    trainer.fit([(x, torch.zeros(8, dtype=torch.long))])
    deltas = [(p - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    change = torch.cat(deltas).norm().item()
    assert 0 < change <= 0.01 + 1e-6


def test_reduce_on_plateau_gets_the_validation_loss() -> None:
    torch.manual_seed(0)
    trainer = Trainer(
        SimpleNN(),
        optimizer={"type": "SGD", "lr": 1e-4},  # little progress: the validation loss plateaus
        schedule={"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "threshold": 0.5},
        epochs=3,
        batch_size=64,
    )
    history = trainer.fit(blobs(), blobs(64, seed=3))
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert trainer.scheduler.best == pytest.approx(history[0]["val_loss"])
    assert [r["lr"] for r in history] == pytest.approx([1e-4, 1e-4, 5e-5])


def test_one_cycle_gets_total_steps_and_steps_per_batch() -> None:
    trainer = Trainer(
        SimpleNN(),
        optimizer={"type": "SGD", "lr": 0.01},
        schedule={"type": "OneCycleLR", "max_lr": 0.1},
        epochs=3,
        batch_size=32,
        grad_accum_steps=3,
    )
    trainer.fit(blobs(256))  # 8 batches: 3 steps per epoch; one more would be an error
    assert trainer.scheduler.total_steps == 9
    assert trainer.scheduler.last_epoch == 9
    assert trainer.lr < 0.01


def test_loss_by_name_with_class_weights() -> None:
    trainer = Trainer(SimpleNN(), loss={"type": "CrossEntropyLoss", "weight": [1.0, 3.0]})
    assert isinstance(trainer.loss_fn, nn.CrossEntropyLoss)
    weight = trainer.loss_fn.weight
    assert weight is not None and torch.equal(weight, torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="unknown loss type 'CrossEntropy'; did you mean"):
        Trainer(SimpleNN(), loss="CrossEntropy")


def test_regression_metrics() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.randn(10, 2)
    trainer = Trainer(model, loss="MSELoss", metrics=["mse", "mae"], batch_size=4)
    result = trainer.evaluate(TensorDataset(x, y))
    with torch.no_grad():
        out = model(x)
    assert result["mse"] == pytest.approx(((out - y) ** 2).mean().item(), rel=1e-5)
    assert result["mae"] == pytest.approx((out - y).abs().mean().item(), rel=1e-5)
    assert result["loss"] == pytest.approx(result["mse"], rel=1e-5)
    with pytest.raises(ValueError, match="'accuracy' needs class scores"):
        Trainer(model, loss="MSELoss", metrics=["accuracy"]).evaluate(TensorDataset(x, y))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(precision: str) -> None:
    torch.manual_seed(0)
    trainer = Trainer(
        SimpleNN(),
        optimizer={"type": "SGD", "lr": 0.05, "momentum": 0.9},
        precision=precision,  # type: ignore[arg-type]
        epochs=3,
        batch_size=16,
        metrics=["accuracy"],
        device="cpu",
        clip_grad_norm=1.0,
    )
    history = trainer.fit(blobs(), blobs(128, seed=1))
    assert (trainer.scaler is not None) == (precision == "fp16")
    assert all(math.isfinite(r["train_loss"]) for r in history)
    assert history[-1]["val_accuracy"] > 0.9
    assert (
        trainer.model.get_parameter("layer1.weight").dtype == torch.float32
    )  # autocast, fp32 master weights
    state = trainer.state_dict()
    assert (state["scaler"] is not None) == (precision == "fp16")


def test_a_loss_that_is_not_finite_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    calls = 0

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        value = nn.functional.cross_entropy(out, y)
        return value * math.nan if calls == 7 else value

    model = SimpleNN()
    saver = Checkpointer(tmp_path, every=2)
    trainer = Trainer(model, loss=loss, batch_size=8, epochs=2, callbacks=[saver], log_every=0)
    with pytest.raises(
        NonFiniteLossError, match=r"not finite\) in epoch 1, between optimizer steps 7 and 8"
    ) as info:
        trainer.fit(blobs(128))
    assert isinstance(info.value, FloatingPointError)
    last = latest_checkpoint(tmp_path)
    assert last is not None and last.step == 6
    assert torch.isnan(model.layer1.weight).any()  # the bad step was taken in memory only
    restored = SimpleNN()
    load_weights(last.weights, restored)
    assert all(torch.isfinite(p).all() for p in restored.parameters())
    assert load_state(last.state)["step"] == 6


def test_data_that_does_not_fit_fails_before_the_first_step() -> None:
    spec = specnet.load("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    batches: list[int] = []
    trainer = Trainer.from_spec(spec)
    trainer.on("on_batch_end", lambda t, loss: batches.append(t.step))
    wrong = TensorDataset(torch.randn(16, 5), torch.zeros(16, dtype=torch.long))
    with pytest.raises(specnet.SpecValidationError, match=r"gives samples of shape \[5\]"):
        trainer.fit(wrong)
    assert batches == []


def test_from_spec_takes_the_train_section() -> None:
    spec = specnet.load(
        "input: [4]\nmodel: {type: Linear, out_features: 2}\ntrain:\n"
        "  optimizer: {type: SGD, lr: 0.3, momentum: 0.9, nesterov: true}\n"
        "  schedule: {type: StepLR, step_size: 2}\n  epochs: 5\n  batch_size: 7\n"
        "  metrics: [accuracy]\n  precision: bf16\n  grad_accum_steps: 2\n  seed: 3\n"
    )
    assert Trainer.from_spec(spec).settings == spec.train  # every setting, none restated
    trainer = Trainer.from_spec(spec, device="cpu")
    assert trainer.settings == spec.train.model_copy(update={"device": "cpu"})
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.param_groups[0]["nesterov"] is True
    assert trainer.scaler is None and trainer.device == torch.device("cpu")
    trainer.fit(blobs(28))
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.StepLR)
    assert trainer.step == 5 * 2  # 4 batches of 7 a epoch, 2 accumulated a step


def test_keyword_settings_are_the_train_sections() -> None:
    trainer = Trainer(SimpleNN(), epochs=3, metrics=["mae"], clip_grad_norm=1, device="cpu")
    assert trainer.settings == TrainSpec.model_validate(
        {"epochs": 3, "metrics": ("mae",), "clip_grad_norm": 1.0, "device": "cpu"}
    )
    with pytest.raises(TypeError, match="argument 'epoch'; did you mean 'epochs'"):
        Trainer(SimpleNN(), epoch=3)
    with pytest.raises(TypeError, match="argument 'data'"):
        Trainer(SimpleNN(), data="Digits")


def test_bad_settings_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric 'f1'; choose from accuracy"):
        Trainer(SimpleNN(), metrics=["f1"])
    with pytest.raises(ValueError, match="epochs: expected int >= 1, got 0"):
        Trainer(SimpleNN(), epochs=0)
    with pytest.raises(ValueError, match="precision: expected one of 'fp32', 'bf16', 'fp16'"):
        Trainer(SimpleNN(), precision="fp8")
    with pytest.raises(ValueError, match="unknown optimizer type 'adam'; did you mean 'Adam'"):
        Trainer(SimpleNN(), optimizer="adam")
    with pytest.raises(TrainingError, match="SGD: Invalid learning rate: -1"):  # torch's check
        Trainer(SimpleNN(), optimizer={"type": "SGD", "lr": -1.0})


def test_schedules_step_as_their_registry_entry_says() -> None:
    def lrs(schedule: Any) -> list[float]:
        trainer = Trainer(
            SimpleNN(),
            optimizer={"type": "SGD", "lr": 0.1},
            schedule=schedule,
            epochs=2,
            batch_size=64,
        )
        return [r["lr"] for r in trainer.fit(blobs())]  # 4 optimizer steps an epoch

    step_lr = {"type": "StepLR", "step_size": 1, "gamma": 0.5}
    assert lrs(step_lr) == pytest.approx([0.1, 0.05])
    registry = schedulers()
    entry = registry["StepLR"]
    assert entry.stepping == "epoch"
    registry.add(dataclasses.replace(entry, stepping="batch"), replace=True)
    try:
        assert lrs(step_lr) == pytest.approx([0.1 * 0.5**4, 0.1 * 0.5**8])
    finally:
        registry.add(entry, replace=True)

    # An object of a subclass steps as the torch class it derives from.
    class Cycle(torch.optim.lr_scheduler.OneCycleLR):
        pass

    cycles: list[Cycle] = []

    def make(optimizer: torch.optim.Optimizer) -> Cycle:
        cycles.append(Cycle(optimizer, max_lr=0.1, total_steps=8))
        return cycles[-1]

    lrs(make)
    assert cycles[0].last_epoch == 8


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_computed_on_what_it_needs_and_refuses_the_rest(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 4)
    fits = {
        CLASS_SCORES: torch.randint(0, 3, (12,)),
        SAME_SIZE: torch.randn(12, 3),
    }
    needs = METRICS[name].needs
    trainer = Trainer(nn.Linear(4, 3), loss=lambda out, y: out.sum() * 0, metrics=[name])
    value = trainer.evaluate(TensorDataset(x, fits[needs]))[name]
    assert math.isfinite(value) and value >= 0
    for other, y in fits.items():
        if other is not needs:
            with pytest.raises(TrainingError, match=re.escape(f"'{name}' needs {needs.text}")):
                trainer.evaluate(TensorDataset(x, y))


class _Samples(torch.utils.data.IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """A stream of (input, target) samples."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __iter__(self) -> Any:
        return (self.data[i] for i in range(len(self.data)))


class _SizedSamples(_Samples):
    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize("stream", [_Samples, _SizedSamples], ids=["unsized", "sized"])
def test_an_iterable_dataset_is_batched_in_its_order_as_torch_does(stream: type[_Samples]) -> None:
    # torch's DataLoader batches an IterableDataset's samples; one with a length is no
    # map-style data set: the trainer cannot index it.
    data = blobs(40)
    results = []
    for d in (stream(data), DataLoader(data, batch_size=8)):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        trainer = Trainer(model, loss="CrossEntropyLoss", batch_size=8, epochs=2, threads=1)
        trainer.fit(d)
        results.append((trainer.state.step, [p.detach().clone() for p in model.parameters()]))
    (steps, weights), (loader_steps, loader_weights) = results
    assert steps == loader_steps == 10
    assert all(torch.equal(a, b) for a, b in zip(weights, loader_weights, strict=True))


def test_a_cosine_schedule_without_t_max_spans_the_runs_epochs() -> None:
    # examples/digits_cnn.yaml leaves T_max out, so --set train.epochs=3 decays in 3 epochs.
    rates = []
    for schedule in ("CosineAnnealingLR", {"type": "CosineAnnealingLR", "T_max": 4}):
        torch.manual_seed(0)
        trainer = Trainer(
            nn.Linear(4, 2),
            optimizer={"type": "SGD", "lr": 1.0},
            schedule=schedule,
            epochs=4,
            batch_size=64,
            threads=1,
        )
        trainer.fit(blobs(64))
        rates.append([row["lr"] for row in trainer.history])
    assert rates[0] == rates[1]
    assert rates[0][0] == 1.0 and rates[0][2] == pytest.approx(0.5)
