"""``train.init_from``: a new run's initial weights, from a file or torchvision's weights.

A ``.safetensors`` file, a ``.pt``/``.pth``/``.bin`` state_dict read with ``weights_only=True``
(also one wrapped as ``{"state_dict": ...}``, as Lightning saves it), or a torchvision weights
name (``ResNet18_Weights.IMAGENET1K_V1``, ``..._Weights.DEFAULT``): torchvision's own
``get_state_dict`` downloads it into torch's hub cache once (``$TORCH_HOME/hub/checkpoints``)
and reads it from there after, so a machine without network uses a file put there. The weights
must match the spec's state_dict key for key and shape for shape; anything else is an error at
``train.init_from`` listing what differs, before the data is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specnet._front.errors import SpecValidationError
from specnet._front.extras import is_weights_name
from specnet._front.spec import Spec

__all__ = ["load_initial_weights", "read_state_dict"]

_SHOWN = 5
"""Keys listed per kind of difference; the rest are counted."""


def _error(spec: Spec, message: str) -> SpecValidationError:
    item = spec.source.error(("train", "init_from"), message, kind="value")
    return SpecValidationError([item])


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _torchvision_weights(name: str, spec: Spec) -> Mapping[str, Any]:
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError) as exc:
        raise _error(
            spec, f"init_from: {name!r} is not a torchvision weights name ({exc})"
        ) from None
    try:
        state: Mapping[str, Any] = weights.get_state_dict(
            progress=False, check_hash=True, weights_only=True, map_location="cpu"
        )
    except Exception as exc:  # no network (URLError), a bad hash, a damaged cached file
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise _error(
            spec,
            f"init_from: cannot read {name} ({type(exc).__name__}: {exc}); it is downloaded "
            f"from {weights.url} to {cache}: without network, put the file there",
        ) from None
    return state


def read_state_dict(path: Path) -> Mapping[str, Any]:
    """The tensors of a weights file (``ValueError`` saying why it has none)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"not a readable safetensors file ({exc})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file fails anywhere in torch's reader
        raise ValueError(
            "not a state_dict written by torch.save, or one holding more than tensors and "
            f"plain values ({type(exc).__name__})"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ValueError("expected a state_dict: a mapping of names (strings) to tensors")
    return loaded


def load_initial_weights(model: nn.Module, init_from: str, spec: Spec) -> None:
    """Load ``init_from`` into ``model`` (every key and shape must match)."""
    if is_weights_name(init_from):
        state = _torchvision_weights(init_from, spec)
    else:
        path = Path(os.path.expanduser(init_from))
        if not path.is_absolute() and spec.source.file:
            path = Path(spec.source.file).parent / path
        if path.is_dir():
            raise _error(spec, f"init_from: {str(path)!r} is a folder: name a weights file")
        if not path.is_file():
            raise _error(spec, f"init_from: no such file {str(path)!r}")
        try:
            state = read_state_dict(path)
        except ValueError as exc:
            raise _error(spec, f"init_from: {path}: {exc}") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} for {list(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{what}: {_listed(keys)}"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("other shapes", shapes),
        )
        if keys
    ]
    if problems:
        raise _error(
            spec,
            f"init_from: {init_from} does not match the model's state_dict ({'; '.join(problems)})",
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
