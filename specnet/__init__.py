"""specnet: declarative PyTorch networks.

A spec file (YAML or JSON) describes a network with torch's own names; specnet
validates it with every error located in the file, infers the shapes torch
needs, and builds the ``nn.Module``.
"""

from ._api import build, load, summary, validate
from ._errors import (
    ErrorItem,
    SpecError,
    SpecShapeError,
    SpecSyntaxError,
    SpecValidationError,
)
from ._registry import register
from ._spec import Spec, TensorSpec
from ._trainspec import TrainSpec

__version__ = "0.1.0"

__all__ = [
    "ErrorItem",
    "Spec",
    "SpecError",
    "SpecShapeError",
    "SpecSyntaxError",
    "SpecValidationError",
    "TensorSpec",
    "TrainSpec",
    "__version__",
    "build",
    "load",
    "register",
    "summary",
    "validate",
]
