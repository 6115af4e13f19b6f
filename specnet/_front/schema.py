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
from importlib import resources
from pathlib import Path
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

__all__ = ["SCHEMA_ID", "SPEC_FILE_PATTERNS", "build_schema", "schema_path", "schema_text"]

SCHEMA_ID = "https://specnet.dev/schemas/v1/specnet.schema.json"
"""The schema's ``$id``: the newest release's schema for format version 1 (docs/editors.md
describes the URL scheme)."""

SPEC_FILE_PATTERNS = ("*.specnet.yaml", "*.specnet.yml", "*.specnet.json")
"""The names that mark a file as a spec for editors (SchemaStore's ``fileMatch``) and for
the pre-commit hook (its ``files``)."""

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
_NONSTRING = {
    "anyOf": [{"type": t} for t in ("number", "boolean", "null", "array", "object")],
    "description": "Any value but a string.",
}
_INPUT = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "Graph nodes only: the name(s) of the node's input(s). Default: the node "
    "before it (none for a type that takes no input, such as Parameter).",
}


# torch's docstrings often end an argument with its default ("Default: ``False``"); the
# schema says it once, from the signature, in the spelling of a spec file ("Default: false").
_TORCH_DEFAULT = re.compile(
    r"\s*Default:\s*(?:``)?(?:\([^)]*\)|\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s`]+?)(?:``)?"
    r"(?:\s+\([^)]*\))?\.?(?=\s*$|\s+[A-Z(])"
)
"""torch's "Default: X" (a value, then the end of the text or a new sentence); not specnet's
own defaults in words ("Default: the last node")."""


def _sentence(doc: str) -> str:
    doc = _TORCH_DEFAULT.sub("", doc).strip()
    return doc if doc.endswith((".", "!", "?")) else doc + "."


def _with_default(doc: str, value: Any) -> str:
    """``doc`` and its default, once: a doc that says it in words keeps its own."""
    doc = _sentence(doc)
    return doc if re.search(r"\bDefault\b", doc) else f"{doc} Default: {json.dumps(value)}."


def _param_doc(t: TypeDef, p: Param) -> str:
    doc = _sentence(p.doc or f"`{p.name}` argument of {t.name}")
    if p.name in t.infers:
        return f"{doc} Inferred from the input shape when left out."
    if p.required:
        return f"{doc} Required."
    return _with_default(doc, p.default)


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


def _arg_schema(
    t: TypeDef, p: Param, variant: str, node: bool, node_def: str = "node"
) -> dict[str, Any]:
    inner = json_schema(p.type, _DEFS + f"{variant}{node_def}", p.range)
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
    for p in t.params:
        # A Graph's nodes are the only place where a node may say its input (and call:).
        node_def = "graphnode" if t.name == "Graph" and p.name == "nodes" else "node"
        props[p.name] = _arg_schema(t, p, variant, node_keys, node_def)
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


def _graph_object(t: TypeDef, variant: str, plain: dict[str, Any]) -> dict[str, Any]:
    """A Graph node of type ``t``: its layer schema (``plain``, referred to key by key, not
    copied) and the keys only a Graph's nodes have."""
    own = f"{_DEFS}{variant}layer.{t.name}/properties/"
    props: dict[str, Any] = {k: {"$ref": own + k} for k in plain["properties"]}
    call = _call(t)
    if call is not None:
        props["call"] = call
    props["input"] = _INPUT
    return {**plain, "properties": props}


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
            "description": what + _with_default(kw.doc, kw.default),
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
    """An object whose ``type`` selects one of ``types`` (if/then per type).

    The list of names comes after the selection, in ``allOf``: an editor's hover shows the
    first schema that matches the value, and that should be the selected type's (its name as
    the heading, its docs), not the list of every name under the enclosing container's title.
    """
    names = {
        "properties": {
            "type": {
                **names_schema,
                "description": f"The {what} type: a torch name (or a specnet name).",
            }
        },
        "required": ["type"],
    }
    return {
        "type": "object",
        "allOf": [
            *(
                {
                    "if": _is_type(t.name),
                    "then": {"$ref": _DEFS + prefix + t.name},
                }
                for t in types
            ),
            names,
        ],
    }


def _is_type(name: str) -> dict[str, Any]:
    """A condition: the object's ``type`` is ``name``.

    Said as "not (type is a string other than ``name``)": yaml-language-server's hover shows
    the first schema the hovered value was checked against, and it checks every ``if``; what
    is checked inside a ``not`` is left out of hovers, so the selected type's own schema comes
    first and names the heading. (A pattern, not a const, for completion too: while completing,
    the server treats a string as a prefix, so const "EmbeddingBag" would match "Embedding".)
    """
    other = {  # anything but the string `name` (so that `type: 3` selects no type)
        "anyOf": [
            {"$ref": _DEFS + "nonstring"},
            {"type": "string", "pattern": f"^(?!{re.escape(name)}$)"},
        ]
    }
    return {
        "required": ["type"],
        "not": {"properties": {"type": other}, "required": ["type"]},
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
        s["description"] = _with_default(field.description or name, field.default)
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
    defs: dict[str, Any] = {"param": _PARAM_REF, "index": _INDEX_REF, "nonstring": _NONSTRING}
    for variant in ("", "open"):
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
        for kind in ("layer", "graphlayer"):
            prefix = f"{variant}{kind}."
            for t in all_types:
                if kind == "layer":
                    defs[prefix + t.name] = _object(t, variant)
                else:  # made from the layer's, defined just before
                    defs[prefix + t.name] = _graph_object(
                        t, variant, defs[f"{variant}layer.{t.name}"]
                    )
            defs[f"{variant}{kind}"] = _dispatch(all_types, prefix, type_names, "layer")
            node = "node" if kind == "layer" else "graphnode"
            defs[f"{variant}{node}"] = {"anyOf": [bare, {"$ref": _DEFS + f"{variant}{kind}"}]}
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
        "$id": SCHEMA_ID,
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
                        "not": {"properties": {"shape": {}}, "required": ["shape"]},
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
        # (strict validators want a required key declared beside it: hence "properties")
        "if": {
            "anyOf": [
                {"properties": {"blocks": {}}, "required": ["blocks"]},
                {"properties": {"params": {}}, "required": ["params"]},
            ]
        },
        "then": {"properties": {"model": {"$ref": _DEFS + "opennode"}}},
        "else": {"properties": {"model": {"$ref": _DEFS + "node"}}},
        "definitions": defs,
    }


def schema_path() -> Path:
    """The schema file this installation carries (``schemas/specnet.schema.json`` of a
    checkout), for an editor's settings or a ``$schema`` modeline."""
    return Path(str(resources.files("specnet._schemas").joinpath("specnet.schema.json")))


def schema_text() -> str:
    """The schema as committed: stable key order, two-space indent."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
