"""specnet's version: the installed distribution's (``specnet --version``, ``run.json``)."""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "installed_version"]

DISTRIBUTION = "specnet-core"
"""The distribution that holds the package (``specnet`` adds torch to it)."""


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # imported from a tree that is not installed
        return "0+unknown"
