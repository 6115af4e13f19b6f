"""The extras' packages: which ones each command needs, and the check that they are
installed, made before the command does any work.

Training and ONNX export use packages that come with extras (``specnet[train]``,
``specnet[export]``: pyproject.toml's ``[project.optional-dependencies]``). A command that
imported a missing one where it first used it would fail with a traceback, perhaps after an
epoch of training, leaving a half-written run folder. So each command says what it will use,
decided from its spec and arguments (:func:`train_needs`, ...), and :func:`require` looks each
one up with :func:`importlib.util.find_spec` (which imports nothing: this module is part of the
front end) and raises one :class:`~specnet._front.errors.MissingDependency` naming every missing
one and the pip line that installs them all.

torch itself is not an extra's: ``specnet-core`` (what pre-commit and CI install) is the
package without it, and ``pip install specnet`` brings it. :func:`require_torch` asks for it
before any command (or ``specnet.build``) that needs it, so it is not listed in the tables.
:data:`PACKAGES` is the one place that says which import name is which distribution in which
extra; tests/test_extras.py checks it against pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import MissingDependency
from .trainspec import WEIGHTS_FILES, Component, TrainSpec

__all__ = [
    "DATA_SETS",
    "LSP_NEEDS",
    "PACKAGES",
    "TORCH_INSTALL",
    "WEIGHTS_FILES",
    "WEIGHTS_NAME",
    "Need",
    "Package",
    "TorchMissingError",
    "data_needs",
    "evaluate_needs",
    "export_needs",
    "install_line",
    "is_weights_name",
    "missing",
    "predict_needs",
    "require",
    "require_torch",
    "train_needs",
    "weights_needs",
]


@dataclass(frozen=True)
class Package:
    """A package of an extra: the name ``import`` takes, the distribution pip installs, and
    the extra of specnet (and of specnet-core) that lists it."""

    module: str
    distribution: str
    extra: str


PACKAGES: dict[str, Package] = {
    p.module: p
    for p in (
        Package("torchvision", "torchvision", "train"),
        Package("tqdm", "tqdm", "train"),
        Package("safetensors", "safetensors", "train"),
        Package("matplotlib", "matplotlib", "train"),
        Package("sklearn", "scikit-learn", "train"),
        Package("onnx", "onnx", "export"),
        Package("onnxscript", "onnxscript", "export"),
        Package("tensorboard", "tensorboard", "tensorboard"),
        Package("pygls", "pygls", "lsp"),
    )
}
"""Every package of an extra that specnet imports, by import name."""

WEIGHTS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_Weights\.[A-Za-z][A-Za-z0-9_]*$")
"""A torchvision weights enum entry, ``<Model>_Weights.<NAME>`` (``train.init_from``)."""


def is_weights_name(init_from: str) -> bool:
    """Whether ``train.init_from`` names torchvision weights rather than a file."""
    return bool(WEIGHTS_NAME.match(init_from)) and not init_from.endswith(WEIGHTS_FILES)


DATA_SETS: dict[str, str | None] = {"Digits": "sklearn", "Synthetic": None, "TensorFile": None}
"""The package each data set that specnet loads itself needs beyond torch (as the loaders of
specnet._train.data import them); torchvision loads every other data set."""


@dataclass(frozen=True)
class Need:
    """A package a command will import, and what for (the message says it when missing)."""

    module: str
    purpose: str


def data_needs(data: Component | None) -> list[Need]:
    """What loading the data set ``data`` names imports (torchvision's transforms included)."""
    if data is None:
        return []
    module = DATA_SETS.get(data.type, "torchvision")
    return [Need(module, f"the {data.type} data set")] if module else []


def weights_needs() -> list[Need]:
    """What reading saved weights (a checkpoint, a run's model.safetensors) imports."""
    return [Need("safetensors", "reading the checkpoint")]


def train_needs(train: TrainSpec | None, *, progress: bool) -> list[Need]:
    """What training into a run folder imports: the data set's package, safetensors for the
    checkpoints and final weights and matplotlib for curves.png (every run writes both), and
    tqdm only for the progress bar."""
    needs = data_needs(train.data if train is not None else None)
    needs += [Need("safetensors", "checkpoints and weights"), Need("matplotlib", "curves.png")]
    if progress:
        needs.append(Need("tqdm", "the progress bar"))
    if train is not None and "tensorboard" in train.loggers:
        needs.append(Need("tensorboard", "the tensorboard logger"))
    if train is not None and train.init_from is not None and is_weights_name(train.init_from):
        needs.append(Need("torchvision", f"the weights {train.init_from}"))
    return needs


def evaluate_needs(train: TrainSpec | None) -> list[Need]:
    """What evaluating saved weights on the spec's data imports."""
    return [*weights_needs(), *data_needs(train.data if train is not None else None)]


def predict_needs() -> list[Need]:
    """What running saved weights on a tensor file imports (no data set is read)."""
    return weights_needs()


def export_needs(format: str) -> list[Need]:
    """What ``specnet export --format FORMAT`` imports beyond torch: onnx and onnxscript for
    torch's ONNX exporter; plain Python source needs nothing more."""
    if format != "onnx":
        return []
    return [Need("onnx", "torch's ONNX exporter"), Need("onnxscript", "torch's ONNX exporter")]


LSP_NEEDS = (Need("pygls", "the language server"),)
"""What ``specnet lsp`` imports: pygls (with lsprotocol)."""


def _installed(module: str) -> bool:
    """Whether ``import module`` would find it, without importing it. A ``None`` in
    :data:`sys.modules` (Python's way to block an import) counts as missing."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(needs: Iterable[Need]) -> list[Need]:
    """The needs whose package is not installed, each package once, in the order given."""
    seen: set[str] = set()
    out: list[Need] = []
    for need in needs:
        if need.module not in seen and not _installed(need.module):
            out.append(need)
        seen.add(need.module)
    return out


def install_line(modules: Iterable[str]) -> str:
    """The pip command that installs ``modules``: ``pip install 'specnet[export,train]'``."""
    extras = sorted({PACKAGES[m].extra for m in modules})
    return f"pip install 'specnet[{','.join(extras)}]'"


def _listed(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _message(gone: Sequence[Need], what: str) -> str:
    """``this needs onnx and onnxscript (torch's ONNX exporter), which are not installed: ...``:
    the packages of one purpose named together."""
    groups: dict[str, list[str]] = {}
    for need in gone:
        groups.setdefault(need.purpose, []).append(PACKAGES[need.module].distribution)
    parts = [f"{_listed(names)} ({purpose})" for purpose, names in groups.items()]
    verb = "is" if len(gone) == 1 else "are"
    line = install_line(n.module for n in gone)
    return f"{what} needs {_listed(parts)}, which {verb} not installed: {line}"


def require(needs: Iterable[Need], what: str = "this") -> None:
    """Raise :class:`MissingDependency` naming every package of ``needs`` that is not installed
    and the pip line for them all; called before a command does any work. ``what`` is the
    message's subject: ``"this"`` after the command's name, ``"training"`` from Python."""
    gone = missing(needs)
    if gone:
        modules = [n.module for n in gone]
        raise MissingDependency(_message(gone, what), modules, install_line(modules))


TORCH_INSTALL = "pip install specnet"
"""The distribution that adds torch to specnet-core (packaging/specnet)."""


class TorchMissingError(MissingDependency):
    """torch is not installed, and what was asked for needs it (exit code 1)."""


def require_torch(what: str) -> None:
    """Raise :class:`TorchMissingError` naming ``what`` unless torch can be imported."""
    if not _installed("torch"):
        raise TorchMissingError(
            f"{what} needs torch, which is not installed (this is specnet-core, the "
            f"validation-only install): {TORCH_INSTALL}",
            ["torch"],
            TORCH_INSTALL,
        )
