"""specnet: declarative PyTorch networks.

A spec file (YAML or JSON) describes a network with torch's own names; specnet
validates it with every error located in the file, infers the shapes torch
needs, and builds the ``nn.Module``.
"""

import typing as _typing

from specnet._front.errors import (
    ErrorItem,
    MissingDependency,
    SpecError,
    SpecnetError,
    SpecShapeError,
    SpecSyntaxError,
    SpecValidationError,
    SpecWarning,
)
from specnet._front.version import installed_version as _installed_version

if _typing.TYPE_CHECKING:
    from specnet._api import build, load, summary, validate
    from specnet._build.register import register
    from specnet._front.registry import list_layers
    from specnet._front.schema import schema_path
    from specnet._front.spec import Spec, TensorSpec
    from specnet._front.trainspec import TrainSpec
    from specnet._import.api import from_module
    from specnet._import.problems import Problem, SpecImportError
    from specnet._train.inference import load_run
    from specnet._train.trainer import Callback, Trainer


__version__ = _installed_version()

__all__ = [
    "Callback",
    "ErrorItem",
    "MissingDependency",
    "Problem",
    "Spec",
    "SpecError",
    "SpecImportError",
    "SpecShapeError",
    "SpecSyntaxError",
    "SpecValidationError",
    "SpecWarning",
    "SpecnetError",
    "TensorSpec",
    "TrainSpec",
    "Trainer",
    "__version__",
    "build",
    "from_module",
    "list_layers",
    "load",
    "load_run",
    "register",
    "schema_path",
    "summary",
    "validate",
]

# Imported when first used, so that `import specnet` costs little (a process that needs one
# module of the package, such as the run's curves painter, does not pay for the rest).
_FRONT = {
    "build": "._api",
    "load": "._api",
    "summary": "._api",
    "validate": "._api",
    "list_layers": "._front.registry",
    "schema_path": "._front.schema",
    "Spec": "._front.spec",
    "TensorSpec": "._front.spec",
    "TrainSpec": "._front.trainspec",
    "Problem": "._import.problems",
    "SpecImportError": "._import.problems",
}

# These names import torch; `import specnet` (and `specnet validate`) does not.
_LAZY = {
    "Callback": "._train.trainer",
    "Trainer": "._train.trainer",
    "register": "._build.register",  # it takes torch classes
    "from_module": "._import.api",  # it traces a module
    "load_run": "._train.inference",
}


def __getattr__(name: str) -> _typing.Any:
    if name in _FRONT:
        from importlib import import_module

        value = getattr(import_module(_FRONT[name], __name__), name)
        globals()[name] = value
        return value
    if name in _LAZY:
        from importlib import import_module

        from specnet._front.extras import require_torch

        require_torch(f"specnet.{name}")

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'specnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FRONT) | set(_LAZY))
