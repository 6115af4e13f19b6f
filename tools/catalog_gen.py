"""Generate ``specnet/_front/catalog.json`` by introspecting the installed torch.

The catalog is the single description of every torch class a spec may name: for each
layer, loss, optimizer and LR scheduler it lists the constructor arguments (in signature
order) with their type, default and a one-line description, all taken from torch's own
signatures and docstrings.  A handful of cases that introspection cannot get right are
fixed by the explicit override tables below; each entry says why.

Run ``python -m tools.catalog_gen`` to rewrite the JSON file next to this module;
:func:`generate` returns the same data as a JSON-able dict (a test compares the two).

Type grammar written to the JSON (``TYPE``)::

    "int" | "float" | "bool" | "str" | "null" | "any" | "node"
    {"enum": [value, ...]}
    {"list": TYPE, "len": N}     # "len" omitted for any length
    {"union": [TYPE, ...]}       # flat, no duplicates, "null" last
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn, optim
from torch.nn.modules.loss import _Loss
from torch.optim import lr_scheduler

from specnet._build.annotations import finalize, to_type, type_from_default, union
from specnet._build.containers import container_attributes

TypeSpec: TypeAlias = "str | dict[str, Any]"
Entry: TypeAlias = "dict[str, Any]"

CATALOG_PATH = Path(__file__).parents[1] / "specnet" / "_front" / "catalog.json"

#: Longest ``doc`` string written for a class or a parameter.
MAX_DOC = 300

_EMPTY = inspect.Parameter.empty


# ---------------------------------------------------------------------------------------
# Which classes go into which section
# ---------------------------------------------------------------------------------------

#: torch.nn module classes that are not layers a spec can name.
EXCLUDED_LAYERS: dict[str, str] = {
    "Module": "the base class itself",
    "Container": "deprecated container base class",
    "Sequential": "container; specnet builds its own sequences",
    "ModuleList": "container",
    "ModuleDict": "container",
    "ParameterList": "container of parameters, not a layer",
    "ParameterDict": "container of parameters, not a layer",
    "RNNBase": "abstract base of RNN/LSTM/GRU (takes a `mode` string)",
    "RNNCellBase": "abstract base of the RNN cells",
    "AdaptiveLogSoftmaxWithLoss": "needs the target in forward(); returns a loss tuple",
}

#: _Loss subclasses that are not offered as losses.
EXCLUDED_LOSSES: dict[str, str] = {
    "NLLLoss2d": "deprecated alias of NLLLoss (warns on construction)",
}

#: Schedulers that need callables or other schedulers, and the base classes.
EXCLUDED_SCHEDULERS: dict[str, str] = {
    "LRScheduler": "base class",
    "_LRScheduler": "deprecated base class",
    "LambdaLR": "needs a callable lr_lambda",
    "MultiplicativeLR": "needs a callable lr_lambda",
    "SequentialLR": "needs other scheduler instances",
    "ChainedScheduler": "needs other scheduler instances",
}

# ---------------------------------------------------------------------------------------
# Parameters that are never written
# ---------------------------------------------------------------------------------------

#: Dropped everywhere: ``self`` and the factory kwargs (specnet picks device/dtype itself).
DROP_ALWAYS = frozenset({"self", "device", "dtype"})

#: Dropped per section.
DROP_BY_SECTION: dict[str, frozenset[str]] = {
    "layers": frozenset(),
    # size_average / reduce are deprecated in favour of `reduction`.
    "losses": frozenset({"size_average", "reduce"}),
    # the parameters are supplied by specnet (the built model).
    "optimizers": frozenset({"params"}),
    # the optimizer is supplied by specnet; verbose is deprecated; last_epoch is for resuming.
    "schedulers": frozenset({"optimizer", "verbose", "last_epoch"}),
}

#: Dropped for one class, with the reason.  Parameters whose name starts with "_"
#: (Embedding._weight/_freeze, FractionalMaxPool*._random_samples) are private and
#: are dropped without being listed here.
DROP_PARAMS: dict[tuple[str, str], str] = {
    ("Hardtanh", "min_value"): "deprecated alias of min_val (FutureWarning)",
    ("Hardtanh", "max_value"): "deprecated alias of max_val (FutureWarning)",
    ("SyncBatchNorm", "process_group"): "a torch.distributed object, not expressible in a spec",
    ("TripletMarginWithDistanceLoss", "distance_function"): (
        "a callable; None (the default) means pairwise_distance"
    ),
    ("LinearCrossEntropyLoss", "options"): (
        "a LinearCrossEntropyOptions dataclass instance, not expressible in a spec"
    ),
    ("CyclicLR", "scale_fn"): "a callable; None (the default) uses `mode`",
}

# ---------------------------------------------------------------------------------------
# Override tables
# ---------------------------------------------------------------------------------------

_REQUIRED: Any = _EMPTY

#: Full type overrides, for parameters torch leaves unannotated or annotates too loosely.
TYPE_OVERRIDES: dict[tuple[str, str], TypeSpec] = {
    # MultiheadAttention.__init__ has no annotations at all; these come from its docstring
    # (embed_dim/num_heads are sizes, kdim/vdim default to None meaning "= embed_dim").
    # dropout, bias, add_bias_kv, add_zero_attn and batch_first are inferred from defaults.
    ("MultiheadAttention", "embed_dim"): "int",
    ("MultiheadAttention", "num_heads"): "int",
    ("MultiheadAttention", "kdim"): {"union": ["int", "null"]},
    ("MultiheadAttention", "vdim"): {"union": ["int", "null"]},
    # Annotated like Conv*d's padding_mode, but ConvTranspose*d raises ValueError for anything
    # but "zeros" ('Only "zeros" padding mode is supported for ConvTranspose2d').
    ("ConvTranspose1d", "padding_mode"): {"enum": ["zeros"]},
    ("ConvTranspose2d", "padding_mode"): {"enum": ["zeros"]},
    ("ConvTranspose3d", "padding_mode"): {"enum": ["zeros"]},
    # Annotated `int | tuple[int]`, but lp_pool1d multiplies by kernel_size: only an int works.
    ("LPPool1d", "kernel_size"): "int",
    # Annotated to allow None, which their forward refuses (None only inside the list, in 2-D
    # and 3-D: that dimension keeps its input size).
    **{
        (f"Adaptive{kind}Pool{n}d", "output_size"): {
            "union": ["int", {"list": {"union": ["int", "null"]}}]
        }
        for kind in ("Avg", "Max")
        for n in (1, 2, 3)
    },
    # Annotated `Any | None`, but they are a custom encoder/decoder module.
    ("Transformer", "custom_encoder"): {"union": ["node", "null"]},
    ("Transformer", "custom_decoder"): {"union": ["node", "null"]},
}

#: Plain ``str`` parameters that torch only accepts from a fixed set of values: the
#: ``"str"`` in their type (alone or inside a union) becomes ``{"enum": [...]}``.
_LOSS_REDUCTIONS = ["none", "mean", "sum"]
STR_CHOICES: dict[tuple[str, str], list[str]] = {
    # padding may be a string only for the non-transposed convolutions.
    ("Conv1d", "padding"): ["valid", "same"],
    ("Conv2d", "padding"): ["valid", "same"],
    ("Conv3d", "padding"): ["valid", "same"],
    # the modes F.interpolate accepts (linear 3D-only, bicubic/lanczos 4D-only, ...).
    ("Upsample", "mode"): [
        "nearest",
        "linear",
        "bilinear",
        "bicubic",
        "trilinear",
        "area",
        "nearest-exact",
        "lanczos",
    ],
    ("GELU", "approximate"): ["none", "tanh"],
    ("EmbeddingBag", "mode"): ["sum", "mean", "max"],
    ("RNN", "nonlinearity"): ["tanh", "relu"],
    ("RNNCell", "nonlinearity"): ["tanh", "relu"],
    # `str | Callable` with default F.relu; only these two names are accepted as strings.
    ("Transformer", "activation"): ["relu", "gelu"],
    ("TransformerEncoderLayer", "activation"): ["relu", "gelu"],
    ("TransformerDecoderLayer", "activation"): ["relu", "gelu"],
    # every loss's `reduction` is one of _LOSS_REDUCTIONS (added in _str_choices) except:
    ("KLDivLoss", "reduction"): ["none", "batchmean", "sum", "mean"],
    # `str | None`; the only line search torch implements.
    ("LBFGS", "line_search_fn"): ["strong_wolfe"],
    # `str | None`; the values Muon.__init__ checks for.
    ("Muon", "adjust_lr_fn"): ["original", "match_rms_adamw", "spectral_unclamped"],
}


#: Descriptions for parameters that torch's docstrings do not document (the Args section
#: omits them); written from the torch source / the documentation of sibling classes.
_CONSTANT_PAD_VALUE = "the constant value to fill the padded area with"
_LPPOOL_NORM_TYPE = (
    "the exponent p of the power-average; p = 1 gives sum pooling (proportional to average "
    "pooling), p = infinity gives max pooling"
)
_CONV_T_PADDING_MODE = "padding mode; ConvTranspose only supports 'zeros'. Default: 'zeros'"
_INPLACE = "can optionally do the operation in-place. Default: False"
PARAM_DOCS: dict[tuple[str, str], str] = {
    ("ConstantPad1d", "value"): _CONSTANT_PAD_VALUE,
    ("ConstantPad2d", "value"): _CONSTANT_PAD_VALUE,
    ("ConstantPad3d", "value"): _CONSTANT_PAD_VALUE,
    ("ConvTranspose1d", "padding_mode"): _CONV_T_PADDING_MODE,
    ("ConvTranspose2d", "padding_mode"): _CONV_T_PADDING_MODE,
    ("ConvTranspose3d", "padding_mode"): _CONV_T_PADDING_MODE,
    ("LPPool1d", "norm_type"): _LPPOOL_NORM_TYPE,
    ("LPPool2d", "norm_type"): _LPPOOL_NORM_TYPE,
    ("LPPool3d", "norm_type"): _LPPOOL_NORM_TYPE,
    ("Mish", "inplace"): _INPLACE,
    ("SiLU", "inplace"): _INPLACE,
    ("TransformerEncoder", "mask_check"): (
        "whether to check that src_key_padding_mask is left-aligned (padding only at the end) "
        "before converting the input to a nested tensor. Default: True"
    ),
    # CrossMapLRN2d has no docstring; it is the Lua-Torch form of LocalResponseNorm.
    ("CrossMapLRN2d", "size"): "amount of neighbouring channels used for normalization",
    ("CrossMapLRN2d", "alpha"): "multiplicative factor. Default: 0.0001",
    ("CrossMapLRN2d", "beta"): "exponent. Default: 0.75",
    ("CrossMapLRN2d", "k"): "additive factor. Default: 1",
}

#: Class descriptions for classes without a docstring.
CLASS_DOCS: dict[str, str] = {
    "CrossMapLRN2d": (
        "Applies local response normalization across channels of a 4D input (N, C, H, W); "
        "the legacy Lua-Torch variant of LocalResponseNorm."
    ),
}


def _str_choices(section: str, cls_name: str, param: str) -> list[str] | None:
    choices = STR_CHOICES.get((cls_name, param))
    if choices is None and section == "losses" and param == "reduction":
        choices = _LOSS_REDUCTIONS
    return choices


# ---------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------


def _signature(cls: type[Any]) -> inspect.Signature:
    """``inspect.signature(cls.__init__, eval_str=True)``, tolerating TYPE_CHECKING imports.

    Some torch modules import ``Callable``/``Iterable``/``Sequence`` only under
    ``TYPE_CHECKING`` and use them in string annotations; those are evaluated again with
    ``typing``/``collections.abc`` names added to the module namespace.
    """
    init = cls.__init__
    try:
        return inspect.signature(init, eval_str=True)
    except NameError:
        namespace: dict[str, Any] = {}
        namespace.update(vars(typing))
        namespace.update(vars(collections.abc))
        namespace.update(vars(sys.modules[init.__module__]))
        return inspect.signature(init, globals=namespace, eval_str=True)


def _only_var_args(sig: inspect.Signature) -> bool:
    kinds = {p.kind for name, p in sig.parameters.items() if name != "self"}
    return bool(kinds) and kinds <= {
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    }


def _class_signature(cls: type[Any]) -> inspect.Signature:
    sig = _signature(cls)
    if not _only_var_args(sig):
        return sig
    overloads = [
        inspect.signature(fn, eval_str=True)
        for fn in getattr(typing, "get_overloads", lambda _f: [])(cls.__init__)
    ]
    overloads = [s for s in overloads if not _only_var_args(s)]
    if overloads:
        return max(overloads, key=lambda s: len(s.parameters))
    # Identity, Sigmoid, Tanh, ...: (*args, **kwargs) that take nothing meaningful.
    return sig


def _apply_choices(t: TypeSpec, choices: list[str], where: str) -> TypeSpec:
    enum: TypeSpec = {"enum": list(choices)}
    if t == "str":
        return enum
    if isinstance(t, dict) and "union" in t and "str" in t["union"]:
        return union([enum if m == "str" else m for m in t["union"]])
    raise TypeError(f"{where}: STR_CHOICES given but the type {t!r} has no plain str")


def _accepts_null(t: TypeSpec) -> bool:
    if t in ("null", "any"):
        return True
    return isinstance(t, dict) and "union" in t and "null" in t["union"]


def _accepts(t: TypeSpec, value: Any) -> bool:
    """Does the JSON ``value`` match type ``t``?  Used to check every default."""
    if t == "any":
        return True
    if t == "null":
        return value is None
    if t == "bool":
        return isinstance(value, bool)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t == "node":
        return False
    assert isinstance(t, dict)
    if "enum" in t:
        return value in t["enum"]
    if "union" in t:
        return any(_accepts(m, value) for m in t["union"])
    if "list" in t:
        if not isinstance(value, list) or len(value) != t.get("len", len(value)):
            return False
        return all(_accepts(t["list"], v) for v in value)
    raise TypeError(f"bad type {t!r}")


# ---------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------


def _json_default(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite default {value!r}")
        return value
    if isinstance(value, (tuple, list)):  # includes torch.Size
        return [_json_default(v, where) for v in value]
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        return value.__name__
    raise TypeError(f"{where}: unsupported default {value!r}")


def _coerce(value: Any, t: TypeSpec) -> Any:
    """Write an int default of a float parameter as a float (0 -> 0.0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and (
        t == "float" or (isinstance(t, dict) and "float" in t.get("union", []))
    ):
        return float(value)
    if isinstance(value, list):
        members = t["union"] if isinstance(t, dict) and "union" in t else [t]
        for m in members:
            if isinstance(m, dict) and "list" in m and _accepts(m, value):
                return [_coerce(v, m["list"]) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# Docstrings
# ---------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`([^`]*)`")
_SIGNATURE_LINE = re.compile(r"^\w+\(.*\)\s*$")
_SECTION = re.compile(
    r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Keyword args|Keyword arguments):\s*$",
    re.IGNORECASE,
)
_ITEM = re.compile(
    r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*"
    r"(?:\((?P<type>(?:[^()]|\([^()]*\))*)\))?\s*:(?:\s+(?P<desc>.*))?$"
)


def _role(match: re.Match[str]) -> str:
    text = match.group(1)
    ref = re.fullmatch(r"(.*?)\s*<[^>]*>", text)
    if ref and ref.group(1):
        return ref.group(1)
    if text.startswith("~"):
        return text[1:].rsplit(".", 1)[-1]
    return text


_LATEX_WORDS = {
    "times": "x",
    "cdot": "*",
    "ldots": "...",
    "dots": "...",
    "cdots": "...",
    "leq": "<=",
    "le": "<=",
    "geq": ">=",
    "ge": ">=",
    "neq": "!=",
    "infty": "inf",
    "in": "in",
    "left": "",
    "right": "",
}


def _latex_word(match: re.Match[str]) -> str:
    word = match.group(1)
    return _LATEX_WORDS.get(word, word)


def _latex(text: str) -> str:
    """Make the LaTeX that appears in :math: roles and math blocks readable as plain text."""
    text = text.replace("\\_", "_").replace("\\{", "{").replace("\\}", "}")
    for _ in range(3):
        text = re.sub(
            r"\\(?:text|mathrm|mathbf|mathit|mathcal|operatorname)\{([^{}]*)\}", r"\1", text
        )
        text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\\([A-Za-z]+)", _latex_word, text)
    text = re.sub(r"([_^])\{(\w+)\}", r"\1\2", text)
    for escape in ("\\,", "\\:", "\\ ", "\\(", "\\)"):  # spacing and \( inline math \)
        text = text.replace(escape, " " if escape[1] in ",: " else "")
    return text


def _plain(text: str) -> str:
    """RST docstring fragment -> one line of plain text."""
    text = _latex(text)
    text = _ROLE.sub(_role, text)
    text = re.sub(r"``(.+?)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*<[^>]*>`_{1,2}", r"\1", text)
    text = re.sub(r"`([^`]+)`_{0,2}", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return " ".join(text.split())


def _shorten(text: str) -> str:
    """Cut to MAX_DOC characters, preferably at the end of a sentence."""
    if len(text) <= MAX_DOC:
        return text
    head = text[:MAX_DOC]
    cut = max(head.rfind(". "), head.rfind(".) "))
    if cut >= MAX_DOC // 3:
        return head[: cut + 1].rstrip()
    return head[: MAX_DOC - 3].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


def _end_cleanly(text: str) -> str:
    """A paragraph that introduces a formula ends in ':'; drop that last sentence."""
    if not text.endswith(":"):
        return text
    cut = text.rfind(". ")
    return text[: cut + 1] if cut > 0 else text[:-1] + "."


def _class_doc(name: str, cls: type[Any]) -> str:
    if name in CLASS_DOCS:
        return CLASS_DOCS[name]
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    while lines and (not lines[0].strip() or _SIGNATURE_LINE.match(lines[0].strip())):
        lines.pop(0)
    paragraph: list[str] = []
    for line in lines:
        if not line.strip():
            break
        paragraph.append(line)
    text = _plain(" ".join(paragraph))
    if not text:
        raise ValueError(f"{name} has no docstring; add it to CLASS_DOCS")
    return _shorten(_end_cleanly(text))


def _arg_docs(doc: str) -> dict[str, str]:
    """Descriptions from every Args/Arguments/Parameters section of a docstring.

    An item is ``name (type): text`` or ``name: text`` at the section's item indentation;
    deeper-indented lines (including further paragraphs and math blocks) continue it.
    """
    found: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    i = 0
    while i < len(lines):
        header = _SECTION.match(lines[i])
        i += 1
        if not header:
            continue
        base = len(header.group("indent"))
        item_indent: int | None = None
        names: list[str] = []
        desc: list[str] = []

        def flush(names: list[str], desc: list[str]) -> None:
            for name in names:
                found.setdefault(name.lstrip("*"), _end_cleanly(_plain(" ".join(desc))))

        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped and len(line) - len(line.lstrip()) <= base:
                break
            i += 1
            if not stripped:
                continue
            indent = len(line) - len(line.lstrip())
            item = _ITEM.match(stripped)
            if item and (item_indent is None or indent == item_indent):
                flush(names, desc)
                item_indent = indent
                names = [n.strip() for n in item.group("names").split(",")]
                desc = [item.group("desc") or ""]
            elif stripped.startswith(".. "):
                # a directive (".. math::", ".. note::"); keep any text after the "::"
                desc.append(stripped.split("::", 1)[-1])
            elif not stripped.startswith(">>>"):
                desc.append(stripped)
        flush(names, desc)
    return found


def _param_docs(cls: type[Any]) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass.__module__.startswith("torch.") and klass.__doc__:
            for name, text in _arg_docs(klass.__doc__).items():
                if text and name not in docs:
                    docs[name] = text
    return docs


def _generated_doc(cls: type[Any], name: str) -> str:
    words = name.replace("_", " ").strip()
    return f"{words[:1].upper()}{words[1:]} argument of {cls.__module__}.{cls.__name__}."


# ---------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------


def _entry(section: str, name: str, cls: type[Any]) -> Entry:
    sig = _class_signature(cls)
    docs = _param_docs(cls)
    drop = DROP_ALWAYS | DROP_BY_SECTION[section]
    params: list[dict[str, Any]] = []
    for p in sig.parameters.values():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name in drop or p.name.startswith("_") or (name, p.name) in DROP_PARAMS:
            continue
        where = f"{section}.{name}.{p.name}"
        override = TYPE_OVERRIDES.get((name, p.name))
        t: TypeSpec
        if override is not None:
            t = override
        elif p.annotation is _EMPTY:
            t = type_from_default(p.default)
        else:
            t = to_type(p.annotation)
        t = finalize(t, where)
        choices = _str_choices(section, name, p.name)
        if choices is not None:
            t = _apply_choices(t, choices, where)
        param: dict[str, Any] = {
            "name": p.name,
            "type": t,
            "doc": _shorten(
                PARAM_DOCS.get((name, p.name)) or docs.get(p.name) or _generated_doc(cls, p.name)
            ),
        }
        if p.default is _EMPTY:
            param["required"] = True
        else:
            default = _json_default(p.default, where)
            if default is None and not _accepts_null(t):
                t = param["type"] = union([t, "null"])  # e.g. AvgPool1d.stride=None
            default = _coerce(default, t)
            if callable(p.default) and not (isinstance(t, dict) and "enum" in t):
                raise TypeError(f"{where}: function default needs STR_CHOICES (an enum type)")
            if not _accepts(t, default):
                raise TypeError(f"{where}: default {default!r} does not match {t!r}")
            param["default"] = default
        params.append(param)
    return {"doc": _class_doc(name, cls), "params": params}


def _public_classes(module: types.ModuleType) -> list[tuple[str, type[Any]]]:
    return [
        (n, obj)
        for n in sorted(dir(module))
        if not n.startswith("_") and isinstance(obj := getattr(module, n), type)
    ]


def _layer_and_loss_classes() -> tuple[dict[str, type[Any]], dict[str, type[Any]]]:
    layers: dict[str, type[Any]] = {}
    losses: dict[str, type[Any]] = {}
    for name, cls in _public_classes(nn):
        if not issubclass(cls, nn.Module) or not cls.__module__.startswith("torch.nn.modules."):
            continue
        if issubclass(cls, _Loss):
            if name not in EXCLUDED_LOSSES:
                losses[name] = cls
        elif name not in EXCLUDED_LAYERS and not name.startswith("Lazy"):
            layers[name] = cls
    return layers, losses


def _optimizer_classes() -> dict[str, type[Any]]:
    return {
        name: cls
        for name, cls in _public_classes(optim)
        if issubclass(cls, optim.Optimizer) and cls is not optim.Optimizer
    }


def _scheduler_classes() -> dict[str, type[Any]]:
    return {
        name: cls
        for name, cls in _public_classes(lr_scheduler)
        if issubclass(cls, lr_scheduler.LRScheduler)
        and cls.__module__ == lr_scheduler.__name__
        and name not in EXCLUDED_SCHEDULERS
    }


SECTIONS = ("layers", "losses", "optimizers", "schedulers")


def generate() -> dict[str, Any]:
    """The catalog for the installed torch, as a JSON-able dict."""
    layers, losses = _layer_and_loss_classes()
    sections = {
        "layers": layers,
        "losses": losses,
        "optimizers": _optimizer_classes(),
        "schedulers": _scheduler_classes(),
    }
    catalog: dict[str, Any] = {"torch": torch.__version__.split("+", 1)[0]}
    for section, classes in sections.items():
        catalog[section] = {n: _entry(section, n, c) for n, c in sorted(classes.items())}
    catalog["attributes"] = {k: sorted(v) for k, v in container_attributes().items()}
    return catalog


def dumps(catalog: dict[str, Any]) -> str:
    """The exact text written to ``catalog.json``."""
    return json.dumps(catalog, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    catalog = generate()
    CATALOG_PATH.write_text(dumps(catalog), encoding="utf-8")
    counts = ", ".join(f"{len(catalog[s])} {s}" for s in SECTIONS)
    print(f"wrote {CATALOG_PATH} (torch {catalog['torch']}: {counts})")


if __name__ == "__main__":
    main()
