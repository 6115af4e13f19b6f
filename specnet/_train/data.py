"""Data sets a spec's ``train.data`` names, and the check that they fit the model's input.

Each data set gives ``(input, target)`` samples for a split, ``"train"`` or ``"test"``:

- torchvision's ``MNIST``, ``FashionMNIST``, ``KMNIST``, ``CIFAR10``, ``CIFAR100`` and ``SVHN``,
  loaded by torchvision itself (its file formats, its ``download``), with torchvision
  transforms named in the spec;
- ``Digits``: scikit-learn's bundled 8x8 digits as ``[1, 8, 8]`` float images, normalised with
  the training split's mean and standard deviation, split by ``test_fraction`` and the seed;
- ``Synthetic``: random inputs shaped like the spec's input, with random class targets or
  regression targets shaped like the model's output;
- ``TensorFile``: tensors ``x``, ``y`` (and optionally ``x_test``, ``y_test``) from a ``.pt``
  file read with ``weights_only=True``.

Relative paths (``root``, ``path``) are relative to the working directory, as in torchvision.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from specnet._front.errors import ErrorItem, Path, SpecValidationError
from specnet._front.source import SourceMap
from specnet._front.spec import Spec, TensorSpec
from specnet._front.trainspec import Component, datasets, transforms

__all__ = [
    "Split",
    "check_fits",
    "data_error",
    "dataset_args",
    "embedding_size",
    "load_dataset",
    "model_output_shape",
    "single_input",
]

Split = Literal["train", "test"]

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


def dataset_args(component: Component) -> dict[str, Any]:
    """The component's arguments with the registry's defaults for those left out."""
    t = datasets()[component.type]
    out = {p.name: p.default for p in t.params if not p.required}
    out.update(component.args)
    return out


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
    request = _Request(
        component.type, dataset_args(component), split, input, output_shape, seed, int_high, source
    )
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


def _vision(r: _Request) -> Dataset[Any]:
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


def _digits(r: _Request) -> Dataset[Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    fraction = r.args["test_fraction"]
    if not 0 < fraction < 1:
        raise r.error(f"test_fraction must be between 0 and 1, got {fraction}", "test_fraction")
    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target).to(torch.int64)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=fraction, random_state=r.seed, stratify=digits.target
    )
    train = images[torch.tensor(train_idx)]
    mean, std = train.mean(), train.std()
    chosen = torch.tensor(train_idx if r.split == "train" else test_idx)
    return TensorDataset((images[chosen] - mean) / std, labels[chosen])


def _synthetic(r: _Request) -> Dataset[Any]:
    n = r.args["samples"] if r.split == "train" else r.args["test_samples"]
    g = torch.Generator().manual_seed(r.seed * 2 + (r.split == "test"))
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
    return TensorDataset(x, y)


def _tensor_file(r: _Request) -> Dataset[Any] | None:
    path = os.path.expanduser(r.args["path"])
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as exc:
        raise r.error(
            f"cannot read {path!r}: {(exc.strerror or str(exc)).lower()}", "path"
        ) from None
    except Exception:  # a damaged or foreign file fails anywhere in torch's reader
        raise r.error(
            f"cannot read {path!r}: it is not a file of tensors written by torch.save (damaged, "
            "or holding objects other than tensors, lists, dicts and plain values)",
            "path",
        ) from None
    if not isinstance(data, Mapping):
        raise r.error(
            f"{path!r} holds a {type(data).__name__}; expected a mapping with tensors 'x' and 'y'",
            "path",
        )
    keys = ("x", "y") if r.split == "train" else ("x_test", "y_test")
    if r.split == "test" and not any(k in data for k in keys):
        return None
    missing = [k for k in keys if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise r.error(
            f"{path!r} has no tensor {' or '.join(repr(k) for k in missing)} "
            f"(its keys: {sorted(map(str, data))})",
            "path",
        )
    x, y = data[keys[0]], data[keys[1]]
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
