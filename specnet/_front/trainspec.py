"""The ``train:`` section: data, loss, optimizer, schedule, metrics and run settings.

Losses, optimizers and schedules are torch's own classes by their torch names,
described by the generated catalog like layers are. Data sets, transforms and
metrics are described here, once.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import Path, SpecValidationError, did_you_mean
from .limits import MAX_SYNTHETIC_ELEMENTS, MAX_THREADS
from .registry import Kind, Param, Registry, TypeDef, losses, optimizers, schedulers
from .source import Document, SourceMap
from .types import Range, TypeSpec, describe
from .validate.args import Arguments as Checker
from .validate.args import pydantic_problem, wrong_value
from .validate.context import Ctx, show

__all__ = [
    "AUTO_THREADS",
    "CLASS_SCORES",
    "COMPONENT_KEYS",
    "DIGITS_CLASSES",
    "DIGITS_IMAGES",
    "LOGGERS",
    "METRICS",
    "SAME_SIZE",
    "WEIGHTS_FILES",
    "Component",
    "Metric",
    "Needs",
    "TrainSpec",
    "check_train",
    "checked_component",
    "data_splits",
    "dataset_args",
    "datasets",
    "default_monitor",
    "evaluated_split",
    "from_epochs",
    "monitor_columns",
    "monitor_mismatch",
    "monitor_mode",
    "monitor_problem",
    "monitor_refused",
    "registry_for",
    "setting_problem",
    "transforms",
    "unknown_metric",
]


@dataclass(frozen=True)
class AutoThreads:
    """How ``threads: auto`` measures (the trainer's :mod:`~specnet._train.threads`)."""

    tolerance: float = 0.10
    """A count within this share of the fastest one's mean step time counts as as fast."""
    dropped_at: float = 2.0
    """After a round, a count this many times slower than the fastest is measured no more."""
    sample_seconds: float = 0.025
    """A timed sample repeats the step until it has taken this long."""
    budget_seconds: float = 1.0
    """After the first timed round, rounds stop once the measuring has taken this long."""
    rounds: int = 4
    """Timed rounds at most."""


AUTO_THREADS = AutoThreads()

WEIGHTS_FILES = (".safetensors", ".pt", ".pth", ".bin")
"""The suffixes of weights files ``train.init_from`` reads (the first is safetensors)."""

Tensor = Any
"""A ``torch.Tensor``. The metrics only call its methods: this module does not import torch."""


@dataclass(frozen=True)
class Needs:
    """What a metric needs of the model's outputs and the targets."""

    text: str
    fits: Callable[[Tensor, Tensor], bool]
    """Whether a batch's outputs and targets are what the metric needs."""


CLASS_SCORES = Needs(
    "class scores [batch, classes, ...] and class-index targets",
    lambda out, y: bool(out.dim() >= 2 and not y.is_floating_point()),
)
SAME_SIZE = Needs(
    "outputs and targets with as many values",
    lambda out, y: bool(out.numel() == y.numel()),
)


@dataclass(frozen=True)
class Metric:
    """A metric ``train.metrics`` may name, computed each epoch on the split evaluated then."""

    name: str
    doc: str
    needs: Needs
    total: Callable[[Tensor, Tensor], tuple[Tensor, int]]
    """A batch's sum of the metric (a tensor, on the device) and how many values it sums;
    over the data, the metric is the sum of the sums divided by the sum of the counts."""
    higher_is_better: bool = False
    """Whether a larger value is better (``monitor``'s default ``mode`` is then max)."""


def _accuracy(out: Tensor, y: Tensor) -> tuple[Tensor, int]:
    return (out.argmax(1) == y).sum(), int(y.numel())


def _top5_accuracy(out: Tensor, y: Tensor) -> tuple[Tensor, int]:
    top = out.topk(min(5, out.shape[1]), dim=1).indices
    return (top == y.unsqueeze(1)).any(1).sum(), int(y.numel())


def _mse(out: Tensor, y: Tensor) -> tuple[Tensor, int]:
    diff = out.float() - y.float().reshape(out.shape)
    return diff.square().sum(), int(diff.numel())


def _mae(out: Tensor, y: Tensor) -> tuple[Tensor, int]:
    diff = out.float() - y.float().reshape(out.shape)
    return diff.abs().sum(), int(diff.numel())


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "accuracy",
            "Share of samples whose highest score is the target class.",
            CLASS_SCORES,
            _accuracy,
            higher_is_better=True,
        ),
        Metric(
            "top5_accuracy",
            "Share of samples whose target class is among the 5 highest scores.",
            CLASS_SCORES,
            _top5_accuracy,
            higher_is_better=True,
        ),
        Metric("mse", "Mean squared error.", SAME_SIZE, _mse),
        Metric("mae", "Mean absolute error.", SAME_SIZE, _mae),
    )
}
"""Every metric by name: validation, the schema and the trainer read this table."""


def unknown_metric(name: str) -> str:
    """The message for a metric name that is not in :data:`METRICS`."""
    names = list(METRICS)
    return f"unknown metric '{name}'" + (
        did_you_mean(name, names) or f"; choose from {', '.join(names)}"
    )


def _known_metric(name: str) -> str:
    if name not in METRICS:
        raise PydanticCustomError("enum", "{message}", {"message": unknown_metric(name)})
    return name


MetricName = Annotated[
    str, AfterValidator(_known_metric), WithJsonSchema({"enum": list(METRICS), "type": "string"})
]


Logger = Literal["tensorboard"]
LOGGERS: tuple[str, ...] = typing.get_args(Logger)
"""The loggers ``train.loggers`` (and ``specnet train --logger``) may name."""


class Component(BaseModel):
    """A torch object named by type, with its arguments: ``{type: SGD, lr: 0.1}``.

    Made from a name (``"SGD"``), a mapping as a spec writes it (``{"type": "SGD", "lr":
    0.1}``) or ``type`` and ``args``; no other key is taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if isinstance(value, Mapping) and not (
            set(value) <= {"type", "args"} and isinstance(value.get("args", {}), Mapping)
        ):
            return {
                "type": value.get("type"),
                "args": {k: v for k, v in value.items() if k != "type"},
            }
        return value


class TrainSpec(BaseModel):
    """How to train the model. Every field has a torch-like name and a default."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    data: Component | None = Field(
        None,
        description="The data set: {type: MNIST, root: ./data, download: true}, Digits, Synthetic or TensorFile.",
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="Samples per batch (an optimizer step takes grad_accum_steps batches): the global batch, shared by the processes when several train together.",
    )
    epochs: int = Field(1, ge=1, description="Passes over the training data.")
    loss: Component = Field(
        Component(type="CrossEntropyLoss"),
        description="A torch.nn loss by name, e.g. CrossEntropyLoss or {type: MSELoss}.",
    )
    optimizer: Component = Field(
        Component(type="Adam", args={"lr": 0.001}),
        description="A torch.optim optimizer by name with its arguments, e.g. {type: SGD, lr: 0.01, momentum: 0.9}.",
    )
    schedule: Component | None = Field(
        None, description="A torch.optim.lr_scheduler by name, e.g. {type: StepLR, step_size: 10}."
    )
    metrics: tuple[MetricName, ...] = Field(
        (),
        description="Metrics computed each epoch on the split evaluated (validation, else test) and on the test split at the end.",
    )
    seed: int = Field(0, description="Seed for every random number generator.")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:(0|[1-9][0-9]{0,3}))?|mps)$",
        description="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32, or bf16/fp16 autocast (fp16 with a gradient scaler)."
    )
    grad_accum_steps: int = Field(
        1, ge=1, description="Batches whose gradients are summed before each optimizer step."
    )
    clip_grad_norm: float | None = Field(
        None, gt=0, description="Clip the gradients' total norm to this value."
    )
    loss_weights: tuple[float, ...] | None = Field(
        None,
        min_length=1,
        description="For a model that returns several outputs in training (a Graph's "
        "train_output): the loss is the sum of weight * loss(output, targets) over them, "
        "e.g. [1.0, 0.3, 0.3] for GoogLeNet's main output and auxiliary heads.",
    )
    compile: bool = Field(False, description="Run the model through torch.compile.")
    threads: Annotated[int, Ge(1), Le(MAX_THREADS)] | Literal["auto"] = Field(
        "auto",
        description=f"CPU threads per process on the CPU, for training and for evaluation and prediction after it: auto times the first batch's step with 1 thread, a quarter, a half and all of the cores this process may use (at most torch's count), and keeps the fastest by mean step time (the fewest within {AUTO_THREADS.tolerance:.0%}); a resumed run keeps the count it started with. A number fixes it (runs are bit-for-bit repeatable only with the same count).",
    )
    monitor: str | None = Field(
        None,
        pattern=r"^(train|val|test)_[a-z0-9_]+$",
        description="The metrics.csv column that picks the best checkpoint (best.safetensors) and early stopping, e.g. val_loss or val_accuracy; default: the loss of the split evaluated each epoch.",
    )
    mode: Literal["min", "max"] | None = Field(
        None,
        description="Whether a lower or a higher monitor is better; default: max for accuracies, min for losses, mse and mae.",
    )
    early_stopping: int | None = Field(
        None,
        ge=1,
        description="Stop when the monitor has not improved (by more than min_delta) for this many epochs.",
    )
    min_delta: float = Field(
        0.0, ge=0, description="The smallest change of the monitor that counts as improving."
    )
    loggers: tuple[Logger, ...] = Field(
        (),
        description="Loggers beside metrics.csv, steps.csv and curves.png (always written): tensorboard writes event files into the run folder's tensorboard/ (pip install 'specnet[tensorboard]').",
    )
    init_from: str | None = Field(
        None,
        min_length=1,
        description=f"Initial weights for a new run: a {WEIGHTS_FILES[0]} file, a {'/'.join(WEIGHTS_FILES[1:])} state_dict (read with weights_only=True), or a torchvision weights name such as ResNet18_Weights.IMAGENET1K_V1 for a spec whose state_dict matches; relative paths are relative to the spec file.",
    )
    data_on_device: bool = Field(
        False,
        description="Keep the whole data set on the training device (small data sets on a GPU): no copy per batch; transforms run once.",
    )


_TRAIN_KEYS = {k: f for k, f in TrainSpec.model_fields.items()}


@dataclass(frozen=True)
class _Setting:
    """A ``train:`` setting's type in the words of layer arguments (:func:`describe`)."""

    type: TypeSpec
    range: Range | None = None
    non_empty: bool = False
    """A list that needs at least one value (``loss_weights``)."""

    def words(self) -> str:
        text = describe(self.type, self.range)
        return text.replace("list of", "non-empty list of", 1) if self.non_empty else text

    def item_words(self) -> str | None:
        """The words for one value of a list setting (None if it is no list)."""
        members = (
            self.type["union"]
            if isinstance(self.type, dict) and "union" in self.type
            else [self.type]
        )
        for m in members:
            if isinstance(m, dict) and "list" in m:
                return describe(m["list"], self.range)
        return None


_WORDS = {
    "device": "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'",
    "threads": f"int in [1, {MAX_THREADS}] or 'auto'",
    "monitor": "a metrics.csv column: train_loss, or val_ or test_ and loss or a metric "
    "of train.metrics (val_loss, val_accuracy, ...)",
}
"""The settings whose type :func:`describe` cannot word (a pattern, a bounded union)."""


def _type_of(annotation: Any) -> TypeSpec | None:
    """The type description of a TrainSpec annotation (None: a Component, checked apart)."""
    plain = {int: "int", float: "float", bool: "bool", str: "str", type(None): "null"}
    if annotation in plain:
        return plain[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is Annotated:
        enum = next(
            (
                m.json_schema.get("enum")
                for m in args[1:]
                if isinstance(m, WithJsonSchema) and m.json_schema is not None
            ),
            None,
        )
        return {"enum": list(enum)} if enum else _type_of(args[0])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = _type_of(args[0])
        return None if inner is None else {"list": inner}
    if origin in (typing.Union, types.UnionType):
        members = [_type_of(a) for a in args]
        if any(m is None for m in members):
            return None
        return {"union": members}
    return None


def _setting(info: FieldInfo) -> _Setting | None:
    t = _type_of(info.annotation)
    if t is None:
        return None
    low = next((m for m in info.metadata if isinstance(m, (Ge, Gt))), None)
    bounds = None
    if isinstance(low, Ge):
        bounds = Range(low=float(low.ge))  # type: ignore[arg-type]
    elif isinstance(low, Gt):
        bounds = Range(low=float(low.gt), low_open=True)  # type: ignore[arg-type]
    return _Setting(
        t, bounds, any(isinstance(m, MinLen) and m.min_length > 0 for m in info.metadata)
    )


_SETTINGS = {k: s for k, f in TrainSpec.model_fields.items() if (s := _setting(f)) is not None}
"""Every setting but the components (data, loss, optimizer, schedule), by name."""


def setting_problem(err: ErrorDetails) -> tuple[Path, str]:
    """Where in ``train:`` one of TrainSpec's Pydantic errors is, and what it says in the
    wording of the model's arguments (``expected int >= 1, got 0``): one wording for the
    whole spec, whatever checked it."""
    loc = tuple(err["loc"])
    name = str(loc[0]) if loc else ""
    setting = _SETTINGS.get(name)
    if err["type"] == "extra_forbidden":
        return loc[:1], f"unknown train setting '{name}'" + did_you_mean(name, list(_TRAIN_KEYS))
    if setting is None or err["type"] in ("enum", "missing"):
        return loc, pydantic_problem(err)
    # check_train passes lists as tuples (TrainSpec is frozen): show them as written.
    value = list(err["input"]) if isinstance(err["input"], tuple) else err["input"]
    if name in _WORDS:
        return loc[:1], wrong_value(_WORDS[name], value)
    item = setting.item_words()
    if len(loc) > 1 and isinstance(loc[1], int) and item is not None:
        return loc[:2], wrong_value(item, value)
    return loc[:1], wrong_value(setting.words(), value)


COMPONENT_KEYS = ("data", "loss", "optimizer", "schedule")

_VISION = "MNIST FashionMNIST KMNIST CIFAR10 CIFAR100 SVHN"


def _typedef(name: str, kind: Kind, params: tuple[Param, ...], doc: str, **more: Any) -> TypeDef:
    return TypeDef(name, kind, params, doc, **more)


DIGITS_IMAGES, DIGITS_CLASSES = 1797, 10
"""scikit-learn's digits: its images and classes (a stratified split holds one of each class)."""

DIGITS_HELD_OUT_BELOW = 0.95
"""Digits' test_fraction + val_fraction stays below this: the rest of the images train."""


def _digits_problems(args: Mapping[str, Any]) -> list[tuple[str, str]]:
    test, val = args["test_fraction"], args["val_fraction"]
    out = []
    if test + val >= DIGITS_HELD_OUT_BELOW:
        out.append(
            (
                "val_fraction",
                f"test_fraction {test} + val_fraction {val} must be below "
                f"{DIGITS_HELD_OUT_BELOW}, to leave images to train on",
            )
        )
    for key, share in (("test_fraction", test), ("val_fraction", val)):
        held = round(share * DIGITS_IMAGES)
        if share and held < DIGITS_CLASSES:
            out.append(
                (
                    key,
                    f"{key} {share} holds out {held} of the {DIGITS_IMAGES} images, fewer than "
                    f"one per class ({DIGITS_CLASSES}): use at least "
                    f"{DIGITS_CLASSES / DIGITS_IMAGES:.4f}"
                    + (" or 0" if key == "val_fraction" else ""),
                )
            )
    return out


def _given(**splits: bool) -> frozenset[str]:
    return frozenset(["train", *(k for k, present in splits.items() if present)])


def dataset_args(component: Component) -> dict[str, Any]:
    """The data set component's arguments with the registry's defaults for those left out."""
    return datasets()[component.type].with_defaults(component.args)


def data_splits(component: Component) -> frozenset[str] | None:
    """The splits the data set ``component`` names gives; None where only reading it tells
    (or for an unknown type)."""
    t = datasets().get(component.type)
    if t is None or t.splits is None:
        return None
    return t.splits(t.with_defaults(component.args))


def evaluated_split(splits: Collection[str]) -> str | None:
    """The split evaluated after each epoch: validation when there is one, else test."""
    return next((s for s in ("val", "test") if s in splits), None)


@functools.cache
def transforms() -> Registry:
    """torchvision transforms a data set may apply, by their torchvision names."""
    reg = Registry("transform")
    size: Any = {"union": ["int", {"list": "int", "len": 2}]}
    floats: Any = {"list": "float"}
    for name, params, doc in [
        ("ToTensor", (), "PIL image or array -> float tensor in [0, 1], channels first."),
        (
            "Normalize",
            (
                Param("mean", floats, "Per-channel means."),
                Param("std", floats, "Per-channel standard deviations."),
            ),
            "(x - mean) / std per channel.",
        ),
        (
            "Resize",
            (Param("size", size, "Output size: an int for the shorter side, or [h, w]."),),
            "Resizes the image.",
        ),
        ("CenterCrop", (Param("size", size, "Output size."),), "Crops the center."),
        (
            "RandomCrop",
            (
                Param("size", size, "Output size."),
                Param(
                    "padding",
                    {"union": ["int", {"list": "int"}, "null"]},
                    "Padding added first.",
                    None,
                ),
            ),
            "Crops at a random place.",
        ),
        (
            "RandomHorizontalFlip",
            (Param("p", "float", "Probability of a flip.", 0.5, Range(0, 1)),),
            "Flips left-right at random.",
        ),
        (
            "Pad",
            (Param("padding", {"union": ["int", {"list": "int"}]}, "Padding on each border."),),
            "Pads the image.",
        ),
        (
            "Grayscale",
            (Param("num_output_channels", {"enum": [1, 3]}, "1 or 3.", 1),),
            "Converts to grayscale.",
        ),
    ]:
        reg.add(_typedef(name, "transform", params, doc))
    return reg


@functools.cache
def datasets() -> Registry:
    """Data sets a ``train.data`` may name."""
    reg = Registry("data set")
    root = Param("root", "str", "Folder holding (or receiving) the data set files.", "./data")
    download = Param("download", "bool", "Download the files when missing (needs network).", False)
    tfs = Param(
        "transforms", {"list": "any"}, "torchvision transforms applied to each image.", ["ToTensor"]
    )
    for name in _VISION.split():
        reg.add(
            _typedef(
                name,
                "data",
                (root, download, tfs),
                f"torchvision.datasets.{name}: its train split for training, its test split for evaluation each epoch (it has no validation split).",
                splits=lambda args: _given(test=True),
            )
        )
    reg.add(
        _typedef(
            "Digits",
            "data",
            (
                Param(
                    "test_fraction",
                    "float",
                    "Share of the samples held out as the test split.",
                    0.2,
                    Range(0, 1, low_open=True, high_open=True),
                ),
                Param(
                    "val_fraction",
                    "float",
                    "Share of the samples held out from training as the validation split (0: none, the test split is evaluated each epoch, as in earlier versions).",
                    0.0,
                    Range(0, 1, high_open=True),
                ),
            ),
            f"scikit-learn's bundled 8x8 handwritten digits ({DIGITS_IMAGES} images, offline): pixel values 0 to 16, standardised with the training split's mean and standard deviation (recorded in the run folder and applied by specnet predict and load_run). test_fraction + val_fraction stays below {DIGITS_HELD_OUT_BELOW}, and each held-out split holds at least one image of each of the {DIGITS_CLASSES} classes.",
            problems=_digits_problems,
            splits=lambda args: _given(test=True, val=bool(args["val_fraction"])),
        )
    )
    reg.add(
        _typedef(
            "Synthetic",
            "data",
            (
                Param("samples", "int", "Training samples.", 1024, Range(1)),
                Param("val_samples", "int", "Validation samples (0: none).", 0, Range(0)),
                Param("test_samples", "int", "Test samples (0: none).", 256, Range(0)),
                Param(
                    "classes",
                    {"union": ["int", "null"]},
                    "Random class targets in [0, classes); null gives regression targets shaped like the model's output.",
                    10,
                    Range(1),
                ),
            ),
            "Random inputs shaped like the spec's input, for smoke tests and benchmarks; a "
            f"split holds at most {MAX_SYNTHETIC_ELEMENTS} elements (its samples times a "
            "sample's input and target).",
            splits=lambda args: _given(val=args["val_samples"] > 0, test=args["test_samples"] > 0),
        )
    )
    reg.add(
        _typedef(
            "TensorFile",
            "data",
            (
                Param(
                    "path",
                    "str",
                    "A .pt file holding a mapping with tensors 'x' and 'y' (and optionally 'x_val', 'y_val' and 'x_test', 'y_test'), read with weights_only=True.",
                ),
            ),
            "Tensors from a file.",
        )
    )
    return reg


def from_epochs(schedule: Component, epochs: int) -> dict[str, int]:
    """The arguments of ``schedule`` the run gives from ``train.epochs`` where the spec leaves
    them out: its scheduler's ``from_run`` ones (CosineAnnealingLR's ``T_max``), and the
    ``epochs`` of one that takes ``total_steps`` given neither (OneCycleLR: one cycle over the
    run). Empty where the schedule's length is the spec's own."""
    described = schedulers().get(schedule.type)
    if described is None:
        return {}
    run = {"epochs": epochs}
    filled = {
        n: run[what] for n, what in described.from_run.items() if schedule.args.get(n) is None
    }
    cycle = "total_steps" in described.by_name
    if cycle and schedule.args.get("total_steps") is None and schedule.args.get("epochs") is None:
        filled["epochs"] = epochs
    return filled


def registry_for(key: str) -> Registry:
    """The registry of the component ``train.<key>`` names (one of :data:`COMPONENT_KEYS`)."""
    return {"data": datasets, "loss": losses, "optimizer": optimizers, "schedule": schedulers}[
        key
    ]()


def _component(checker: Checker, raw: Any, path: Path, reg: Registry) -> Component | None:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        article = "an" if reg.what[0] in "aeiou" else "a"
        checker.error(
            path,
            f"expected {article} {reg.what} name or a mapping with 'type', got {show(raw)}",
            kind="type",
        )
        return None
    name = raw["type"]
    if name not in reg:
        checker.error((*path, "type"), reg.unknown(name), kind="unknown_type")
        return None
    t = reg[name]
    args = {k: v for k, v in raw.items() if k != "type"}
    checked = checker.check_args(t, args, path, Ctx(), allowed_extra=("type",))
    if checked is None:
        return None
    together = t.problems(t.with_defaults(checked)) if t.problems is not None else []
    for key, msg in together:
        checker.error((*path, key), f"{name}: {msg}", kind="value")
    if together:
        return None
    if reg is datasets() and "transforms" in checked:
        tfs = []
        for i, tf in enumerate(checked["transforms"]):
            c = _component(checker, tf, (*path, "transforms", i), transforms())
            if c is None:
                return None
            tfs.append(c)
        checked["transforms"] = [{"type": c.type, **c.args} for c in tfs]
    return Component(type=name, args=checked)


def _plain(value: Any) -> Any:
    """A value given in Python as a spec would write it: a path as its string, a NumPy
    number as the Python one."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return item()
    return value


def checked_component(component: Component, key: str, source: SourceMap | None = None) -> Component:
    """``component`` checked as validation checks ``train.<key>`` (a :class:`TrainSpec` made
    in Python is not): the same messages, located by ``source`` when given. Raises
    :class:`SpecValidationError`."""
    checker = Checker(Document({}, source or SourceMap(None, text=False)))
    raw = {"type": component.type, **{k: _plain(v) for k, v in component.args.items()}}
    checked = _component(checker, raw, ("train", key), registry_for(key))
    if checked is None or checker.errors:
        raise SpecValidationError(checker.errors)
    return checked


SYNTHETIC_SPLITS = {"train": "samples", "val": "val_samples", "test": "test_samples"}
"""The argument of a Synthetic data set that gives each split's number of samples."""


def synthetic_problem(
    args: Mapping[str, Any], key: str, input_elements: int, output_elements: int = 0
) -> str | None:
    """Why a Synthetic data set (``args``, defaults filled in) cannot generate the split whose
    number of samples is ``key``, for inputs of ``input_elements`` elements a sample and a model
    whose output has ``output_elements`` (the target of regression; a class target is one):
    past :data:`MAX_SYNTHETIC_ELEMENTS`."""
    n = int(args[key])
    each = input_elements + (1 if args["classes"] is not None else output_elements)
    if n * each <= MAX_SYNTHETIC_ELEMENTS:
        return None
    return (
        f"{n} samples of {each} elements (input and target) are {n * each} elements, more "
        f"than the {MAX_SYNTHETIC_ELEMENTS} a split may generate (a fixed limit, "
        "specnet._front.limits.MAX_SYNTHETIC_ELEMENTS)"
    )


def check_data_size(checker: Checker, train: TrainSpec, input_elements: int) -> None:
    """Report, into ``checker``, each split of ``train``'s Synthetic data set past the limit
    for inputs of ``input_elements`` elements a sample (a regression target, whose shape
    validation does not know, counted as nothing)."""
    data = train.data
    if data is None or data.type != "Synthetic":
        return
    args = datasets()["Synthetic"].with_defaults(data.args)
    for key in SYNTHETIC_SPLITS.values():
        problem = synthetic_problem(args, key, input_elements)
        if problem is not None:
            checker.error(("train", "data", key), f"Synthetic: {problem}", kind="value")


def check_train(checker: Checker, raw: Any) -> TrainSpec | None:
    """Validate the ``train:`` section, reporting into ``checker``."""
    path: Path = ("train",)
    if not isinstance(raw, Mapping):
        checker.error(path, f"'train' must be a mapping, got {show(raw)}", kind="type")
        return None
    values: dict[str, Any] = {}
    ok = True
    for k, v in raw.items():
        if k not in _TRAIN_KEYS:
            checker.error(
                (*path, k),
                f"unknown train setting '{k}'" + did_you_mean(k, list(_TRAIN_KEYS)),
                key=True,
                kind="unknown_key",
            )
            ok = False
        elif k in COMPONENT_KEYS:
            if v is None and k in ("data", "schedule"):
                continue
            c = _component(checker, v, (*path, k), registry_for(k))
            if c is None:
                ok = False
            else:
                values[k] = c
        elif k == "metrics" and isinstance(v, list):
            unknown = [(i, m) for i, m in enumerate(v) if isinstance(m, str) and m not in METRICS]
            for i, m in unknown:
                checker.error((*path, k, i), unknown_metric(m), kind="enum")
            if unknown:
                ok = False
            else:
                values[k] = tuple(v)
        elif k in ("loss_weights", "loggers") and isinstance(v, list):
            values[k] = tuple(v)
        else:
            values[k] = v
    try:
        spec = TrainSpec.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where, msg = setting_problem(err)
            checker.error((*path, *where), msg, kind="type")
        return None
    splits = data_splits(spec.data) if spec.data is not None else None
    problem = (
        monitor_problem(spec)  # the data decides when it is read
        if splits is None
        else monitor_refused(spec, evaluated_split(splits))
    )
    if problem is not None:
        checker.error((*path, "monitor"), problem, kind="value")
        return None
    return spec if ok else None


def monitor_columns(train: TrainSpec, splits: tuple[str, ...] = ("val", "test")) -> list[str]:
    """The metrics.csv columns a ``monitor`` may name when ``splits`` are evaluated."""
    names = ("loss", *train.metrics)
    return ["train_loss", *(f"{s}_{n}" for s in splits for n in names)]


def monitor_problem(train: TrainSpec, splits: tuple[str, ...] = ("val", "test")) -> str | None:
    """Why ``train.monitor`` names no column of metrics.csv (None when it names one)."""
    if train.monitor is None or train.monitor in (columns := monitor_columns(train, splits)):
        return None
    return f"monitor '{train.monitor}' is not a column of metrics.csv" + (
        did_you_mean(train.monitor, columns) or f"; choose from {', '.join(columns)}"
    )


def default_monitor(train: TrainSpec, split: str | None) -> str:
    """``train.monitor``, or the loss of ``split`` (the split evaluated each epoch; None: the
    training loss)."""
    return train.monitor or (f"{split}_loss" if split is not None else "train_loss")


def monitor_mismatch(saved: str | None, monitor: str) -> str | None:
    """Why a run that monitored ``saved`` cannot resume monitoring ``monitor``."""
    if saved is None or saved == monitor:
        return None
    return (
        f"the run being resumed monitors {saved}, not {monitor}: its best epoch and early "
        f"stopping count in {saved} (set monitor: {saved}, or start a new run)"
    )


def monitor_refused(train: TrainSpec, split: str | None) -> str | None:
    """Why ``train.monitor`` names no column of a run that evaluates ``split`` each epoch
    (None: no split), or None when it names one."""
    problem = monitor_problem(train, (split,) if split is not None else ())
    if problem is None:
        return None
    return f"{problem} (this run evaluates {f'the {split} split' if split else 'no split'})"


def monitor_mode(train: TrainSpec, monitor: str) -> Literal["min", "max"]:
    """``train.mode``, or its default for ``monitor``: max for a metric whose higher values
    are better (the accuracies), min otherwise."""
    if train.mode is not None:
        return train.mode
    metric = METRICS.get(monitor.partition("_")[2])  # val_accuracy: accuracy
    return "max" if metric is not None and metric.higher_is_better else "min"
