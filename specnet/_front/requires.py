"""torch, asked for before a command or ``specnet.build`` starts, with the line that installs it.

``specnet-core`` (what pre-commit and CI install) is the package without torch; validation and
the schema work there. What needs torch checks for it first, so that a user sees what to
install instead of a ``ModuleNotFoundError`` traceback after work was done.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingDependency

__all__ = ["TORCH_INSTALL", "TorchMissingError", "require_torch"]

TORCH_INSTALL = "pip install specnet"
"""The distribution that adds torch to specnet-core (packaging/specnet)."""


class TorchMissingError(MissingDependency):
    """torch is not installed, and what was asked for needs it (exit code 1); the extras'
    packages are asked for by :mod:`specnet._front.extras` the same way."""


def require_torch(what: str) -> None:
    """Raise :class:`TorchMissingError` naming ``what`` unless torch can be imported."""
    if importlib.util.find_spec("torch") is None:
        raise TorchMissingError(
            f"{what} needs torch, which is not installed (this is specnet-core, the "
            f"validation-only install): {TORCH_INSTALL}",
            ["torch"],
            TORCH_INSTALL,
        )
