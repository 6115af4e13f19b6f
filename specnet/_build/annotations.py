"""torch annotations -> specnet's type language (see :mod:`specnet._front.types`).

Used by ``specnet.register`` for a user's class, and by the catalog generator
(``tools/catalog_gen.py``, strict) for torch's own classes.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import torch
from torch import nn

from specnet._front.types import TypeSpec

__all__ = [
    "CALLABLE",
    "TENSOR",
    "finalize",
    "to_type",
    "type_from_annotation",
    "type_from_default",
    "union",
]

_EMPTY = inspect.Parameter.empty

# Internal markers that never reach the catalog: a ``Tensor`` annotation and a callable one.
TENSOR = "<tensor>"
CALLABLE = "<callable>"


def _key(t: TypeSpec) -> str:
    return json.dumps(t, sort_keys=True)


def union(members: list[TypeSpec]) -> TypeSpec:
    """Flatten, de-duplicate and simplify a union (see the module docstring)."""
    flat: list[TypeSpec] = []
    for m in members:
        inner = m["union"] if isinstance(m, dict) and "union" in m else [m]
        for t in inner:
            if _key(t) not in {_key(f) for f in flat}:
                flat.append(t)
    if "any" in flat:
        return "any"
    non_null = [t for t in flat if t != "null"]
    # `float | Tensor` (lr, weight_decay, betas items): a spec gives the number.
    # `str | Callable` (activation): a spec gives the name.
    for marker in (TENSOR, CALLABLE):
        if marker in non_null and len(non_null) > 1:
            flat.remove(marker)
            non_null.remove(marker)
    # The consumer treats "float" as accepting ints.
    if "float" in flat and "int" in flat:
        flat.remove("int")
    flat = [t for t in flat if t != "null"] + (["null"] if "null" in flat else [])
    return flat[0] if len(flat) == 1 else {"union": flat}


def to_type(ann: Any, strict: bool = True) -> TypeSpec:
    """Translate a (evaluated) annotation into the catalog's type grammar.

    With ``strict`` an annotation outside the grammar raises (so a new torch release cannot
    slip an unexpected type into the catalog); otherwise it becomes ``"any"``.
    """
    if ann is None or ann is type(None):
        return "null"
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if isinstance(ann, type) and ann in simple:
        return simple[ann]
    if ann is Any or isinstance(ann, typing.TypeVar):
        return "any"
    if ann is torch.Size:
        return {"list": "int"}
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is Union or origin is types.UnionType:
        return union([to_type(a, strict) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"list": to_type(args[0], strict)}
        if not args:
            return {"list": "any"}
        return {"list": union([to_type(a, strict) for a in args]), "len": len(args)}
    if origin in (
        list,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Iterable,
    ):
        return {"list": to_type(args[0], strict) if args else "any"}
    if origin is collections.abc.Callable or ann is collections.abc.Callable:
        return CALLABLE
    if isinstance(ann, type) and issubclass(ann, nn.Module):
        return "node"
    if isinstance(ann, type) and issubclass(ann, torch.Tensor):
        return TENSOR
    if not strict:
        return "any"
    raise TypeError(f"unsupported annotation {ann!r}")


def type_from_default(default: Any) -> TypeSpec:
    """Type of an unannotated parameter, from its default."""
    if default is _EMPTY or default is None:
        return "any"
    for py, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if isinstance(default, py):
            return name
    if isinstance(default, tuple):
        return {"list": union([type_from_default(d) for d in default]), "len": len(default)}
    raise TypeError(f"cannot infer a type from default {default!r}")


def finalize(t: TypeSpec, where: str, strict: bool = True) -> TypeSpec:
    """Replace the internal markers: a Tensor is given as a list of floats in a spec.

    A callable left over (not next to a ``str``) cannot be written in a spec: strict mode
    raises so that it gets a DROP_PARAMS entry; otherwise it becomes ``"any"``.
    """
    if t == TENSOR:
        return {"list": "float"}
    if t == CALLABLE:
        if strict:
            raise TypeError(f"{where}: callable-only parameter; add it to DROP_PARAMS")
        return "any"
    if isinstance(t, dict):
        if "union" in t:
            return union([finalize(m, where, strict) for m in t["union"]])
        if "list" in t:
            return {**t, "list": finalize(t["list"], where, strict)}
    return t


def type_from_annotation(annotation: Any, default: Any = None) -> TypeSpec:
    """The catalog type of one constructor argument of a user class (``specnet.register``).

    ``annotation`` is the evaluated annotation, a string annotation, or ``None`` when the
    argument has none (its type then comes from ``default``).  Lenient where the catalog
    generator is strict: anything outside the type grammar (a callable, a config object)
    becomes ``"any"``, and a Tensor becomes a list of floats.
    """
    if isinstance(annotation, str):  # an annotation inspect could not evaluate
        return "any"
    if annotation is None or annotation is _EMPTY:
        try:
            return type_from_default(default)
        except TypeError:
            return "any"
    return finalize(to_type(annotation, strict=False), "", strict=False)
