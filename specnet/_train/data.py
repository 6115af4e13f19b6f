"""Data sets a spec's ``train.data`` names, and the check that they fit the model's input.

Each data set gives ``(input, target)`` samples for a split, ``"train"``, ``"val"`` or ``"test"``
(``None`` for a split it does not have: torchvision's data sets have no validation split):

- torchvision's ``MNIST``, ``FashionMNIST``, ``KMNIST``, ``CIFAR10``, ``CIFAR100`` and ``SVHN``,
  loaded by torchvision itself (its file formats, its ``download``), with torchvision
  transforms named in the spec;
- ``Digits``: scikit-learn's bundled 8x8 digits as ``[1, 8, 8]`` float images, split by
  ``test_fraction``, ``val_fraction`` and the seed (stratified), standardised with the training
  split's mean and standard deviation (:func:`preprocessing` gives it, for the run folder);
- ``Synthetic``: random inputs shaped like the spec's input, with random class targets or
  regression targets shaped like the model's output;
- ``TensorFile``: tensors ``x``, ``y`` (and optionally ``x_val``, ``y_val``, ``x_test``,
  ``y_test``) from a ``.pt`` file read with ``weights_only=True``.

Relative paths (``root``, ``path``) are relative to the working directory, as in torchvision.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from specnet._front.errors import ErrorItem, Path, SpecValidationError
from specnet._front.source import SourceMap
from specnet._front.spec import Spec, TensorSpec
from specnet._front.trainspec import (
    SYNTHETIC_SPLITS,
    Component,
    checked_component,
    dataset_args,
    datasets,
    synthetic_problem,
    transforms,
)

from .digits import digits_arrays, split_settings
from .preprocess import Preprocess

__all__ = [
    "Split",
    "check_fits",
    "data_error",
    "dense_problem",
    "embedding_size",
    "load_dataset",
    "model_output_shape",
    "preprocessing",
    "read_tensors",
    "single_input",
]

Split = Literal["train", "val", "test"]

_DATA_PATH: Path = ("train", "data")


def data_error(
    msg: str, source: SourceMap | None = None, path: Path = _DATA_PATH
) -> SpecValidationError:
    """A :class:`SpecValidationError` about the data, located at ``train.data`` when known."""
    item = source.error(path, msg, kind="data") if source else ErrorItem(path, msg, "data")
    return SpecValidationError([item])


def single_input(spec: Spec) -> TensorSpec:
    """The spec's one input; the data sets give one input per sample."""
    if len(spec.inputs) != 1:
        raise data_error(
            f"the built-in data sets give one input, but this model takes {len(spec.inputs)}",
            spec.source,
        )
    return next(iter(spec.inputs.values()))


@dataclass(frozen=True)
class _Request:
    name: str
    args: dict[str, Any]
    split: Split
    input: TensorSpec
    output_shape: tuple[int, ...]
    seed: int
    int_high: int
    source: SourceMap | None

    def error(self, msg: str, *path: str) -> SpecValidationError:
        return data_error(f"{self.name}: {msg}", self.source, (*_DATA_PATH, *path))


def load_dataset(
    component: Component,
    split: Split,
    *,
    input: TensorSpec,
    output_shape: tuple[int, ...] = (),
    seed: int = 0,
    int_high: int = 2,
    source: SourceMap | None = None,
) -> Dataset[Any] | None:
    """The ``split`` of the data set ``component`` names; ``None`` when it has no such split.

    ``input`` and ``output_shape`` shape ``Synthetic`` data (``int_high`` bounds integer
    inputs, e.g. an embedding's ``num_embeddings``); ``seed`` fixes ``Digits``' split and
    ``Synthetic``'s values. Missing files and bad contents raise :class:`SpecValidationError`
    located at ``train.data``.
    """
    if component.type not in datasets():
        raise data_error(datasets().unknown(component.type), source, (*_DATA_PATH, "type"))
    args = dataset_args(checked_component(component, "data", source))
    request = _Request(component.type, args, split, input, output_shape, seed, int_high, source)
    return _LOADERS.get(component.type, _vision)(request)


def _transform(specs: list[Any]) -> Callable[[Any], Any]:
    import torchvision.transforms as T

    steps = []
    for spec in specs:
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        name = spec.pop("type")
        if name not in transforms():  # validation checked the names; keep the allow-list here
            raise data_error(transforms().unknown(name))
        steps.append(getattr(T, name)(**spec))
    composed: Callable[[Any], Any] = T.Compose(steps)
    return composed


def _vision(r: _Request) -> Dataset[Any] | None:
    if r.split == "val":
        return None
    import torchvision.datasets as D

    root = os.path.expanduser(r.args["root"])
    kwargs: dict[str, Any] = {
        "root": root,
        "download": r.args["download"],
        "transform": _transform(r.args["transforms"]),
    }
    if r.name == "SVHN":
        kwargs["split"] = r.split
    else:
        kwargs["train"] = r.split == "train"
    try:
        ds: Dataset[Any] = getattr(D, r.name)(**kwargs)
    except (RuntimeError, OSError) as exc:
        hint = (
            ""
            if r.args["download"]
            else "; set 'download: true' (needs the network) or put the files there"
        )
        raise r.error(f"cannot load the {r.split} split from {root!r}: {exc}{hint}") from None
    return ds


_DIGITS_INPUT = "scikit-learn's pixel values (load_digits().images), 0 to 16, as [1, 8, 8] floats"


@dataclass(frozen=True)
class _DigitsSplits:
    images: torch.Tensor
    """Every image, [N, 1, 8, 8] float32 pixel values 0 to 16."""
    labels: torch.Tensor
    index: dict[str, torch.Tensor]
    """Each split's sample numbers (an empty validation split when val_fraction is 0)."""

    def normalize(self) -> Preprocess:
        train = self.images[self.index["train"]]
        return Preprocess((train.mean().item(),), (train.std().item(),), _DIGITS_INPUT)


def _digits_splits(args: Mapping[str, Any], seed: int) -> _DigitsSplits:
    return _digits_split(*split_settings(args), seed)


@functools.cache  # a run reads its three splits and the normalisation: one load, one split
def _digits_split(test_fraction: float, val_fraction: float, seed: int) -> _DigitsSplits:
    t = {
        k: torch.from_numpy(v) for k, v in digits_arrays(test_fraction, val_fraction, seed).items()
    }
    return _DigitsSplits(t["images"], t["labels"], {k: t[k] for k in ("train", "val", "test")})


def _digits(r: _Request) -> Dataset[Any] | None:
    splits = _digits_splits(r.args, r.seed)
    chosen = splits.index[r.split]
    if r.split == "val" and not len(chosen):
        return None
    normalize = splits.normalize().module()
    return TensorDataset(normalize(splits.images[chosen]), splits.labels[chosen])


def preprocessing(component: Component | None, seed: int = 0) -> Preprocess | None:
    """The normalisation the data set ``component`` names applies to its raw inputs, which
    :func:`specnet.load_run` and ``specnet predict`` apply in turn: Digits' standardisation, or
    a torchvision data set's ``Normalize`` when it is the last of its transforms (its inputs are
    then what the transforms before it give: ToTensor's floats in [0, 1], channels first).
    ``None`` for data sets that give inputs as they are (Synthetic, TensorFile)."""
    if component is None:
        return None
    if component.type == "Digits":
        return _digits_splits(dataset_args(component), seed).normalize()
    if component.type in _LOADERS:
        return None
    steps = dataset_args(component)["transforms"]
    last = steps[-1] if steps else None
    if not isinstance(last, Mapping) or last.get("type") != "Normalize":
        return None
    before = ", ".join(s if isinstance(s, str) else str(s["type"]) for s in steps[:-1])
    return Preprocess(
        tuple(float(v) for v in last["mean"]),
        tuple(float(v) for v in last["std"]),
        f"tensors as the data set's transforms before Normalize give them ({before})",
    )


def _synthetic(r: _Request) -> Dataset[Any] | None:
    key = SYNTHETIC_SPLITS[r.split]
    n = r.args[key]
    if r.split != "train" and n == 0:
        return None
    too_many = synthetic_problem(r.args, key, math.prod(r.input.shape), math.prod(r.output_shape))
    if too_many is not None:  # a TrainSpec made in Python, or a large regression target
        raise r.error(too_many, key)
    try:
        return TensorDataset(*_random_samples(r, n))
    except (RuntimeError, MemoryError) as exc:  # torch: "DefaultCPUAllocator: can't allocate"
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
        raise r.error(
            f"not enough memory for {n} samples of {list(r.input.shape)} {r.input.dtype} and "
            "their targets",
            key,
        ) from None


def _random_samples(r: _Request, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random inputs and targets of the Synthetic split ``r`` asks for."""
    # Each split its own stream (the training and test ones as before validation existed).
    stream = {"train": 0, "test": 1, "val": 2**40}[r.split]
    g = torch.Generator().manual_seed(r.seed * 2 + stream)
    dtype = getattr(torch, r.input.dtype)
    shape = (n, *r.input.shape)
    if dtype.is_floating_point:
        x = torch.randn(shape, generator=g).to(dtype)
    elif dtype == torch.bool:
        x = torch.randint(0, 2, shape, generator=g).bool()
    else:
        x = torch.randint(0, r.int_high, shape, generator=g, dtype=dtype)
    classes = r.args["classes"]
    if classes is None:
        y = torch.randn((n, *r.output_shape), generator=g)
    else:
        y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def read_tensors(path: str | os.PathLike[str]) -> Any:
    """A user's file of tensors (a data set's, ``predict``'s input), read with ``weights_only``
    onto the CPU; torch's notes on loading are not for its reader. Raises ``ValueError``
    saying why it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, weights_only=True, map_location="cpu")
    except OSError as exc:
        raise ValueError((exc.strerror or str(exc)).lower()) from None
    except Exception:  # a damaged, foreign or text file fails anywhere in torch's reader
        raise ValueError(
            "it is not a file of tensors written by torch.save (damaged, empty, or holding "
            "objects other than tensors, lists, dicts and plain values)"
        ) from None


def dense_problem(t: torch.Tensor) -> str | None:
    """Why a tensor read from a user's file cannot be used as it is: sparse (or another
    layout that is not strided)."""
    if t.layout != torch.strided:
        return f"a {t.layout} tensor; save a dense one (to_dense())"
    return None


def _tensor_file(r: _Request) -> Dataset[Any] | None:
    path = os.path.expanduser(r.args["path"])
    try:
        data = read_tensors(path)
    except ValueError as exc:
        raise r.error(f"cannot read {path!r}: {exc}", "path") from None
    if not isinstance(data, Mapping):
        raise r.error(
            f"{path!r} holds a {type(data).__name__}; expected a mapping with tensors 'x' and 'y'",
            "path",
        )
    keys = ("x", "y") if r.split == "train" else (f"x_{r.split}", f"y_{r.split}")
    if r.split != "train" and not any(k in data for k in keys):
        return None
    missing = [k for k in keys if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise r.error(
            f"{path!r} has no tensor {' or '.join(repr(k) for k in missing)} "
            f"(its keys: {sorted(map(str, data))})",
            "path",
        )
    x, y = data[keys[0]], data[keys[1]]
    for key, t in ((keys[0], x), (keys[1], y)):
        sparse = dense_problem(t)
        if sparse is not None:
            raise r.error(f"{path!r}: {key!r} is {sparse}", "path")
        if t.dim() == 0:
            raise r.error(f"{path!r}: {key!r} is a single number, not one row per sample", "path")
    if len(x) != len(y):
        raise r.error(
            f"{path!r}: {keys[0]!r} has {len(x)} samples but {keys[1]!r} has {len(y)}", "path"
        )
    return TensorDataset(x, y)


_LOADERS: dict[str, Callable[[_Request], Dataset[Any] | None]] = {
    "Digits": _digits,
    "Synthetic": _synthetic,
    "TensorFile": _tensor_file,
}


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        dtype = str(x.dtype).removeprefix("torch.")
        return f"shape {list(x.shape)} ({dtype})"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__module__}.{type(x).__name__}, not a tensor"


def check_fits(
    data: Dataset[Any], name: str, inputs: Mapping[str, TensorSpec], source: SourceMap | None = None
) -> None:
    """Raise :class:`SpecValidationError` unless ``data``'s first sample fits the spec's input.

    ``name`` names the data set in the message. Run before training starts, so a mismatch is
    an error about the spec, not a crash inside the first forward pass.
    """
    if len(inputs) != 1:
        raise data_error(
            f"{name} gives one input per sample, but the model takes {len(inputs)}: {list(inputs)}",
            source,
        )
    want = next(iter(inputs.values()))
    want_text = f"shape {list(want.shape)} ({want.dtype})"
    try:
        n = len(data)  # type: ignore[arg-type]
    except TypeError:
        n = -1
    if n == 0:
        raise data_error(f"{name} has no samples", source)
    sample = data[0]
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise data_error(
            f"{name}'s samples must be (input, target) pairs, got {_describe(sample)}", source
        )
    x = sample[0]
    if (
        not isinstance(x, torch.Tensor)
        or tuple(x.shape) != want.shape
        or x.dtype != getattr(torch, want.dtype)
    ):
        raise data_error(
            f"{name} gives samples of {_describe(x)}, but the spec's input is {want_text}", source
        )


def model_output_shape(model: nn.Module, input: TensorSpec) -> tuple[int, ...]:
    """The shape of one sample of ``model``'s output, from a forward pass on zeros in eval mode."""
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(
                torch.zeros((1, *input.shape), dtype=getattr(torch, input.dtype), device=device)
            )
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returns a {type(out).__name__}, not a tensor")
    return tuple(out.shape[1:])


def embedding_size(model: nn.Module, default: int = 2) -> int:
    """The smallest ``num_embeddings`` of the model's embeddings: a safe bound for token ids."""
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    return min(sizes) if sizes else default
