"""``specnet import MODULE:CALLABLE``: the user's model, from their own Python code, as a spec.

The command imports the module the user names (that is what they ask for, as ``python -m``
does); a spec file never imports anything. The callable's keyword arguments come from
``--arg key=value`` (values read as YAML scalars or lists: ``--arg num_classes=10``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from specnet._front.errors import SpecnetError, UsageError, did_you_mean
from specnet._front.outputs import check_writable

__all__ = ["ImportCommandError", "arguments", "build_module", "load_callable", "shape", "writable"]


class ImportCommandError(SpecnetError):
    """The user's callable could not be imported or called, or gave no ``nn.Module``."""


def shape(text: str) -> tuple[int, ...]:
    """``3,224,224`` -> ``(3, 224, 224)``."""
    try:
        dims = tuple(int(d) for d in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(
            f"--input {text!r}: expected sizes separated by commas, e.g. 3,224,224"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise UsageError(f"--input {text!r}: expected sizes of at least 1, e.g. 3,224,224")
    return dims


def arguments(items: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "aux_logits=false"]`` -> ``{"num_classes": 10, "aux_logits": False}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg {item!r}: expected NAME=VALUE, e.g. num_classes=10")
        out[key] = _value(value)
    return out


def _value(text: str) -> Any:
    """A number where the text is one (``1e-3`` too, which YAML reads as a string), else
    a YAML scalar or list (``true``, ``[1, 2]``, ``null``), else the text."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def writable(path: Path) -> None:
    """Refuses an ``-o`` that cannot be written, before any work."""
    check_writable(path, "-o", "spec file")


def load_callable(target: str) -> Any:
    """The object ``package.module:name`` (``name`` may be dotted: ``Class.build``)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{target!r}: expected MODULE:CALLABLE, e.g. torchvision.models:resnet50")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # the user's own modules, as `python -m` finds them
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ImportCommandError(f"cannot import {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the user's module raised (or exited) on import
        raise ImportCommandError(
            f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ImportCommandError(f"{module_name!r} has no {attr!r}" + did_you_mean(part, names))
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImportCommandError(f"{target} is not callable")
    return obj


def build_module(target: str, kwargs: dict[str, Any]) -> Any:
    """Calls the user's callable; its result must be an ``nn.Module``."""
    from torch import nn

    fn = load_callable(target)
    try:
        module = fn(**kwargs)
    except (Exception, SystemExit) as exc:  # the user's code
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ImportCommandError(f"{target}({call}) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ImportCommandError(f"{target} returned a {type(module).__name__}, not an nn.Module")
    return module
