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

from .expr import INDEX, MAX_EXPRESSION
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
from .validate.context import LAYER_NAME, NODE_KEYS, PARAM_NAME, SPEC_NAME, TEMPLATE_NAME

__all__ = ["build_schema", "schema_text"]

_DEFS = "#/definitions/"
_PARAM_REF = {
    "type": "string",
    "pattern": r"\$[A-Za-z_]",
    "maxLength": MAX_EXPRESSION,
    "description": "A parameter ($name), replaced by its value, or an expression that uses "
    "parameters ($planes * 4, ($k - 1) // 2, make_divisible($c * $width, 8)).",
}
_INDEX_REF = {
    "type": "string",
    "pattern": r"^(?:[^$]|\$index(?![A-Za-z0-9_]))*\$index(?:[^$]|\$index(?![A-Za-z0-9_]))*$",
    "maxLength": MAX_EXPRESSION,
    "description": "An expression of a copy's number, $index (inside a node with repeat or for).",
}
_REPEAT = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_LAYERS},
        {"$ref": _DEFS + "param"},
    ],
    "description": "Repeat this layer: N fresh copies in a row (inside a list), side by side "
    "(a name with {...} parts), or an nn.Sequential of N copies; $index is the copy's number.",
}
_FOR = {
    "anyOf": [
        {"type": "array", "items": {"type": "object"}, "maxItems": MAX_LAYERS},
        {"$ref": _DEFS + "param"},
    ],
    "description": "A table: one copy of this node per row, the row's keys added to its "
    "arguments; $index is the row's number.",
}
_IF = {
    "anyOf": [{"type": "boolean"}, {"$ref": _DEFS + "param"}],
    "description": "Leave this node out when false (in a Graph its name then stands for its first input).",
}
_SPLICE = {
    "type": "boolean",
    "description": "Put this Sequential's layers straight into the parent, continuing its "
    "numbering or names.",
}
_CALL = {
    "type": "object",
    "description": "Keyword arguments of the layer's forward: constants, or names of graph nodes.",
}
_INPUT = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "Graph nodes only: the name(s) of the node's input(s). Default: the node "
    "before it (none for a type that takes no input, such as Parameter).",
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


_SCALARS = ("integer", "number", "boolean", "string")


def _with_params(schema: Any, param: str) -> Any:
    """``schema`` where every value, and every item of a list, may also be a parameter or an
    expression (``shape: [1, 1, $hidden]``)."""
    if isinstance(schema, list):
        return [_with_params(s, param) for s in schema]
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    out = {
        k: _with_params(v, param) if k in ("anyOf", "oneOf", "items") else v
        for k, v in schema.items()
    }
    if out.get("type") in (*_SCALARS, "array"):
        return {"anyOf": [out, {"$ref": _DEFS + param}]}
    return out


def _arg_schema(t: TypeDef, p: Param, variant: str, node: bool) -> dict[str, Any]:
    inner = json_schema(p.type, _DEFS + f"{variant}node", p.range)
    if node:  # a layer's values may be expressions; the train: section's are plain values
        # Without blocks or params, the only name an expression may use is a copy's $index.
        param = "param" if variant == "open" else "index"
        inner = _with_params(inner, param)
        if not (isinstance(inner, dict) and "anyOf" in inner and len(inner) == 1):
            inner = {"anyOf": [inner, {"$ref": _DEFS + param}]}
    if "$ref" in inner:
        return {"allOf": [inner], "description": _param_doc(t, p)}
    return {**inner, "description": _param_doc(t, p)}


def _object(t: TypeDef, variant: str, node_keys: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"type": {"const": t.name, "description": t.doc or t.name}}
    if node_keys:
        props["repeat"] = _REPEAT
        props["for"] = _FOR
        props["if"] = _IF
        props["splice"] = _SPLICE
        call = _call(t)
        if call is not None:
            props["call"] = call
        props["input"] = _INPUT
    for p in t.params:
        props[p.name] = _arg_schema(t, p, variant, node_keys)
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


def _call(t: TypeDef) -> dict[str, Any] | None:
    """The ``call:`` of a layer whose ``forward`` takes keyword arguments (its rule's)."""
    call = t.rule.call if t.rule is not None else None
    if call is None:
        return None
    props: dict[str, Any] = {}
    for name, kw in call.keywords.items():
        value = (
            {"anyOf": [{"type": "string", "pattern": LAYER_NAME.pattern}, {"type": "null"}]}
            if kw.tensor
            else json_schema(kw.type, _DEFS + "node")
        )
        what = "A graph node's name (a tensor), or null. " if kw.tensor else ""
        props[name] = {
            "anyOf": [value, {"$ref": _DEFS + "param"}],
            "description": f"{what}{kw.doc} Default: {json.dumps(kw.default)}.",
        }
    return {**_CALL, "properties": props, "additionalProperties": False}


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
    pattern = LAYER_NAME.pattern if container == "Graph" else f"^{TEMPLATE_NAME.pattern}$"
    return {
        "type": "string",
        "pattern": pattern,
        "not": {"enum": sorted(attributes(container))},
        "description": "A child's name: letters, digits, '_' and '-'"
        + ("" if container == "Graph" else " (and {expression} parts, filled in for each copy)")
        + f", and not an attribute that the built {container} already has.",
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


def _tensor(named: bool = False) -> dict[str, Any]:
    """An input's schema; one of several ``named`` inputs may say ``batch: false``."""
    batch = {
        "batch": {
            "type": "boolean",
            "description": "false: the input has no batch dimension (a mask, a table), its "
            "shape is its full shape. Default: true.",
        }
    }
    shape = {
        "type": "array",
        "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": _DEFS + "param"}]},
        "minItems": 1,
        "description": "Shape of ONE sample, without the batch dimension, e.g. [1, 28, 28] "
        "(a size may be a model parameter: [3, $resolution, $resolution]).",
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
                    **(batch if named else {}),
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
    defs: dict[str, Any] = {"param": _PARAM_REF, "index": _INDEX_REF}
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
    defs["namedtensor"] = _tensor(named=True)
    defs["params"] = {
        "type": "object",
        "description": "Parameter names: a type name (int, float, bool, str, list, any) makes one required; any other value is its default.",
        "additionalProperties": True,
        "propertyNames": {
            "pattern": f"^{PARAM_NAME.pattern}$",
            "not": {"enum": [*NODE_KEYS, INDEX]},
        },
    }
    defs["block"] = {
        "type": "object",
        "description": "A reusable sub-network with parameters; use it as {type: <block name>, <param>: <value>}.",
        "required": ["body"],
        "properties": {
            "params": {
                "allOf": [{"$ref": _DEFS + "params"}],
                "description": "The block's parameters ($name in its body).",
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
                        "additionalProperties": {"$ref": _DEFS + "namedtensor"},
                        "minProperties": 1,
                    },
                ],
            },
            "params": {
                "allOf": [{"$ref": _DEFS + "params"}],
                "description": "The model's parameters ($name in the model and in every block).",
            },
            "variants": {
                "type": "object",
                "description": "Named sets of values for the model's params, chosen with "
                "--variant NAME, variant= in Python, or the 'variant' key.",
                "additionalProperties": {"type": "object"},
            },
            "variant": {"type": "string", "description": "The variant built by default."},
            "blocks": {
                "type": "object",
                "description": "Reusable sub-networks with parameters, by name.",
                "additionalProperties": {"$ref": _DEFS + "block"},
            },
            "model": {"description": model_doc},
            "train": {"$ref": _DEFS + "train"},
        },
        "additionalProperties": False,
        "if": {"anyOf": [{"required": ["blocks"]}, {"required": ["params"]}]},
        "then": {"properties": {"model": {"$ref": _DEFS + "opennode"}}},
        "else": {"properties": {"model": {"$ref": _DEFS + "node"}}},
        "definitions": defs,
    }


def schema_text() -> str:
    """The schema as committed: stable key order, two-space indent."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
