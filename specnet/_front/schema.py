"""The JSON Schema for editors (yaml-language-server) and check-jsonschema.

Generated from the registry, so it names exactly the types and arguments that
validation accepts. Its shape is chosen for the editors: every layer kind is
selected by its ``type`` with ``if``/``then`` (an unknown ``type`` is answered
with the list of valid names, and a layer's own arguments are offered for
completion), and ``additionalProperties: false`` flags unknown keys.

JSON Schema cannot see the names a file defines under ``blocks:``, so a file
with ``blocks`` is checked by a second, lenient variant of the node schema that
also accepts block uses (any identifier as ``type``) and ``$param`` values.
What the schema cannot express (graph references, block parameters, shapes) is
left to ``specnet validate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .limits import MAX_LAYERS, MAX_NAME
from .registry import (
    CONTAINERS,
    Param,
    Registry,
    TypeDef,
    attributes,
    layers,
    losses,
    optimizers,
    schedulers,
)
from .spec import DTYPES
from .trainspec import TrainSpec, datasets, transforms
from .types import json_schema
from .validate.context import LAYER_NAME, NODE_KEYS, PARAM_NAME, SPEC_NAME

__all__ = ["build_schema", "schema_text"]

_DEFS = "#/definitions/"
_PARAM_REF = {
    "type": "string",
    "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$",
    "description": "A block parameter, replaced by its value where the block is used.",
}
_REPEAT = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_LAYERS,
    "description": "Repeat this layer: N fresh copies in a row (inside a list), or an nn.Sequential of N copies.",
}
_INPUT = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
    "description": "Graph nodes only: the name(s) of the node's input(s). Default: the node before it.",
}


def _param_doc(t: TypeDef, p: Param) -> str:
    doc = (p.doc or f"`{p.name}` argument of {t.name}").rstrip()
    if not doc.endswith((".", "!", "?", "...")):
        doc += "."
    if p.name in t.infers:
        return f"{doc} Inferred from the input shape when left out."
    if p.required:
        return f"{doc} Required."
    return f"{doc} Default: {json.dumps(p.default)}."


def _arg_schema(t: TypeDef, p: Param, variant: str) -> dict[str, Any]:
    inner = json_schema(p.type, _DEFS + f"{variant}node", p.range)
    inner = {k: v for k, v in inner.items()} if "$ref" not in inner else inner
    if variant == "open":
        inner = {"anyOf": [inner, {"$ref": _DEFS + "param"}]}
    if "$ref" in inner:
        return {"allOf": [inner], "description": _param_doc(t, p)}
    return {**inner, "description": _param_doc(t, p)}


def _object(t: TypeDef, variant: str, node_keys: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"type": {"const": t.name, "description": t.doc or t.name}}
    if node_keys:
        props["repeat"] = (
            {"anyOf": [_REPEAT, {"$ref": _DEFS + "param"}], "description": _REPEAT["description"]}
            if variant == "open"
            else _REPEAT
        )
        props["input"] = _INPUT
    for p in t.params:
        props[p.name] = _arg_schema(t, p, variant)
        if t.kind == "container" and p.name in ("layers", "nodes"):
            _name_children(props[p.name], t.name)
    required = ["type", *(n for n in t.required())]
    return {
        "type": "object",
        "title": t.name,
        "description": t.doc or t.name,
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _name_children(schema: Any, container: str) -> None:
    """Give the mapping of children in ``schema`` the rules for names validation has."""
    if isinstance(schema, list):
        for item in schema:
            _name_children(item, container)
    elif isinstance(schema, dict):
        if schema.get("type") == "object" and "additionalProperties" in schema:
            schema["propertyNames"] = {"$ref": _DEFS + f"names.{container}"}
        for value in schema.values():
            _name_children(value, container)


def _child_names(container: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": LAYER_NAME.pattern,
        "not": {"enum": sorted(attributes(container))},
        "description": f"A child's name: letters, digits and '_', and not an attribute "
        f"that the built {container} already has.",
    }


def _dispatch(
    types: Iterable[TypeDef], prefix: str, names_schema: dict[str, Any], what: str
) -> dict[str, Any]:
    """An object whose ``type`` selects one of ``types`` (if/then per type)."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                **names_schema,
                "description": f"The {what} type: a torch name (or a specnet name).",
            }
        },
        "allOf": [
            {
                # A pattern rather than "const": while completing, yaml-language-server
                # treats a string as a prefix, so const "EmbeddingBag" would match "Embedding".
                "if": {
                    "properties": {"type": {"type": "string", "pattern": f"^{re.escape(t.name)}$"}},
                    "required": ["type"],
                },
                "then": {"$ref": _DEFS + prefix + t.name},
            }
            for t in types
        ],
    }


def _bare(types: Iterable[TypeDef]) -> list[str]:
    return sorted(t.name for t in types if not t.required())


def _component(reg: Registry, prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    for t in reg.values():
        defs[prefix + t.name] = _object(t, "", node_keys=False)
    names = sorted(reg)
    return {
        "anyOf": [
            {
                "type": "string",
                "enum": _bare(reg.values()),
                "description": f"A {reg.what} with default arguments.",
            },
            _dispatch(reg.values(), prefix, {"enum": names}, reg.what),
        ]
    }


def _train(defs: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    components = {
        "data": _component(datasets(), "data.", defs),
        "loss": _component(losses(), "loss.", defs),
        "optimizer": _component(optimizers(), "optimizer.", defs),
        "schedule": _component(schedulers(), "schedule.", defs),
    }
    defs["transform"] = _component(transforms(), "transform.", defs)
    for name in ["MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100", "SVHN"]:
        defs["data." + name]["properties"]["transforms"]["items"] = {"$ref": _DEFS + "transform"}
    pyd = TrainSpec.model_json_schema()
    for name, field in TrainSpec.model_fields.items():
        if name in components:
            props[name] = {**components[name], "description": field.description}
            continue
        s = dict(pyd["properties"][name])
        s.pop("title", None)
        s.pop("default", None)
        if name == "metrics":
            s = {"type": "array", "items": s["items"] if "items" in s else s["prefixItems"][0]}
            s["items"].pop("title", None)
        if "anyOf" in s:
            for sub in s["anyOf"]:
                sub.pop("title", None)
        s["description"] = f"{field.description} Default: {json.dumps(field.default)}."
        props[name] = s
    return {
        "type": "object",
        "description": "How `specnet train` trains the model.",
        "properties": props,
        "additionalProperties": False,
    }


def _tensor() -> dict[str, Any]:
    shape = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "minItems": 1,
        "description": "Shape of ONE sample, without the batch dimension, e.g. [1, 28, 28].",
    }
    return {
        "anyOf": [
            shape,
            {
                "type": "object",
                "required": ["shape"],
                "properties": {
                    "shape": shape,
                    "dtype": {
                        "enum": list(DTYPES),
                        "description": "Element type. Default: float32.",
                    },
                },
                "additionalProperties": False,
            },
        ]
    }


def build_schema() -> dict[str, Any]:
    """The JSON Schema of spec files, as a dict."""
    reg = layers()
    all_types = [*CONTAINERS.values(), *(reg[n] for n in sorted(reg))]
    names = [t.name for t in all_types]
    defs: dict[str, Any] = {"param": _PARAM_REF}
    for variant in ("", "open"):
        prefix = f"{variant}layer." if variant else "layer."
        for t in all_types:
            defs[prefix + t.name] = _object(t, variant)
        type_names: dict[str, Any]
        if variant:
            type_names = {
                "anyOf": [
                    {"enum": names},
                    {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                    {"$ref": _DEFS + "param"},
                ]
            }
        else:
            type_names = {"enum": names}
        defs[f"{variant}layer"] = _dispatch(all_types, prefix, type_names, "layer")
        bare: dict[str, Any] = {
            "type": "string",
            "enum": _bare(all_types),
            "description": "A layer with no required arguments, e.g. ReLU.",
        }
        if variant:
            bare = {
                "type": "string",
                "description": "A layer with no required arguments, a block, or a block parameter.",
            }
        defs[f"{variant}node"] = {"anyOf": [bare, {"$ref": _DEFS + f"{variant}layer"}]}
    for container in ("Sequential", "ModuleDict", "Graph"):
        defs[f"names.{container}"] = _child_names(container)
    defs["tensor"] = _tensor()
    defs["block"] = {
        "type": "object",
        "description": "A reusable sub-network with parameters; use it as {type: <block name>, <param>: <value>}.",
        "required": ["body"],
        "properties": {
            "params": {
                "type": "object",
                "description": "Parameter names: a type name (int, float, bool, str, list, any) makes one required; any other value is its default.",
                "additionalProperties": True,
                "propertyNames": {
                    "pattern": f"^{PARAM_NAME.pattern}$",
                    "not": {"enum": list(NODE_KEYS)},
                },
            },
            "body": {
                "allOf": [{"$ref": _DEFS + "opennode"}],
                "description": "The network; `$name` values are replaced by the parameters.",
            },
        },
        "additionalProperties": False,
    }
    defs["train"] = _train(defs)
    model_doc = "The network: a layer, a container (Sequential, ModuleList, ModuleDict, Graph) or a block use."
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "specnet spec (format version 1)",
        "description": "A PyTorch network described with torch's own names. See specnet's docs/spec-format.",
        "type": "object",
        "required": ["input", "model"],
        "properties": {
            "version": {"const": 1, "description": "Spec format version. Default: 1."},
            "name": {
                "type": "string",
                "pattern": f"^{SPEC_NAME.pattern}$",
                "description": "A name for the network (it names run folders and exported "
                f"code): letters, digits, '_', '-' and '.', at most {MAX_NAME} characters.",
            },
            "input": {
                "description": "Shape of one sample (no batch dimension), {shape, dtype}, or a mapping of named inputs for a Graph.",
                "anyOf": [
                    {"$ref": _DEFS + "tensor"},
                    {
                        "type": "object",
                        "not": {"required": ["shape"]},
                        "additionalProperties": {"$ref": _DEFS + "tensor"},
                        "minProperties": 1,
                    },
                ],
            },
            "blocks": {
                "type": "object",
                "description": "Reusable sub-networks with parameters, by name.",
                "additionalProperties": {"$ref": _DEFS + "block"},
            },
            "model": {"description": model_doc},
            "train": {"$ref": _DEFS + "train"},
        },
        "additionalProperties": False,
        "if": {"required": ["blocks"]},
        "then": {"properties": {"model": {"$ref": _DEFS + "opennode"}}},
        "else": {"properties": {"model": {"$ref": _DEFS + "node"}}},
        "definitions": defs,
    }


def schema_text() -> str:
    """The schema as committed: stable key order, two-space indent."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
