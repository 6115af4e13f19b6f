"""The registry: every type a spec may name, each described once.

A :class:`TypeDef` holds a type's arguments (name, type, default, doc), which of
them shape inference fills in, and how to build it. Validation, the JSON Schema,
the compiler and the summary all read these descriptions; none keeps a list of
its own. torch's classes are described by ``catalog.json``, generated from
torch's signatures and docstrings by ``python -m tools.catalog_gen``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from .errors import did_you_mean
from .rules import all_rules
from .rules.base import COMMON_RANGES, Range, Rule
from .rules.tensors import CAUSAL_DTYPES
from .spec import DTYPES
from .types import TypeSpec

__all__ = [
    "CONTAINERS",
    "REQUIRED",
    "TRAIN_RANGES",
    "Param",
    "Registry",
    "TypeDef",
    "attributes",
    "catalog",
    "layers",
    "list_layers",
    "losses",
    "name_taken",
    "optimizers",
    "schedulers",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an argument that has none."""

Kind = Literal[
    "layer", "op", "container", "custom", "loss", "optimizer", "scheduler", "data", "transform"
]


@dataclass(frozen=True)
class Param:
    """One constructor argument."""

    name: str
    type: TypeSpec
    doc: str = ""
    default: Any = REQUIRED
    range: Range | None = None
    """The numbers torch accepts here (each item's, for a list); ``None``: any."""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True, eq=False)
class TypeDef:
    """Everything specnet knows about one nameable type: its one description.

    Validation, the JSON Schema, shape inference, the compiler, the summary and the
    export all read this; none keeps a table of its own.
    """

    name: str
    kind: Kind
    params: tuple[Param, ...]
    doc: str = ""
    rule: Rule | None = field(default=None, compare=False, repr=False)
    """Layers: the shape rule (what it infers, how many inputs, argument ranges)."""
    factory: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    """Returns the class (or callable) that builds the object; imports lazily."""
    stepping: str | None = None
    """Schedulers: when the trainer steps them (``"epoch"``, ``"batch"`` or ``"metric"``)."""
    problems: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = field(
        default=None, compare=False, repr=False
    )
    """Data sets: what is wrong with the arguments together (every argument given, defaults
    filled in), each as the argument to blame and why; validation and loading both ask."""
    splits: Callable[[Mapping[str, Any]], frozenset[str] | None] | None = field(
        default=None, compare=False, repr=False
    )
    """Data sets: the splits the arguments give (of "train", "val", "test"); None, or no
    function, where only reading the data tells."""
    from_run: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Schedulers: arguments the run fills in when the spec leaves them out, each with what
    fills it (``{"T_max": "epochs"}``: ``train.epochs``)."""

    @property
    def infers(self) -> frozenset[str]:
        """Arguments that shape inference fills in when the spec leaves them out."""
        return frozenset(self.rule.infers) if self.rule is not None else frozenset()

    @functools.cached_property
    def by_name(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    def required(self) -> list[str]:
        """Arguments a spec must give (inferred ones excluded)."""
        return [p.name for p in self.params if p.required and p.name not in self.infers]

    @functools.cached_property
    def _defaults(self) -> tuple[tuple[str, Any], ...]:
        inferred = self.infers
        return tuple(
            (p.name, p.default) for p in self.params if not p.required and p.name not in inferred
        )

    def with_defaults(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments a spec gave, with torch's defaults for the others.

        Required arguments the spec left out stay absent, and so do inferred ones
        (even where torch has a default, like ``Transformer.d_model``): the shape
        rule fills those in. Defaults are copied, so rules may change them.
        """
        out = dict(args)
        for name, default in self._defaults:
            if name not in out:
                out[name] = copy.deepcopy(default) if isinstance(default, (list, dict)) else default
        return out

    def build_target(self) -> Any:
        """The class (or callable) that builds this type, imported on first use."""
        return self._target

    @functools.cached_property
    def _target(self) -> Any:
        if self.factory is None:
            raise TypeError(f"{self.name} cannot be built directly")
        return self.factory()


class Registry(Mapping[str, TypeDef]):
    """A name -> :class:`TypeDef` mapping that refuses duplicates."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._types: dict[str, TypeDef] = {}

    def add(self, t: TypeDef, *, replace: bool = False) -> TypeDef:
        if t.name in self._types and not replace:
            raise ValueError(f"{self.what} type '{t.name}' is already registered")
        self._types[t.name] = t
        return t

    def remove(self, name: str) -> None:
        del self._types[name]

    def __getitem__(self, name: str) -> TypeDef:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def unknown(self, name: str, extra: list[str] | None = None) -> str:
        """Message for an unknown name, with a suggestion."""
        choices = [*self._types, *(extra or [])]
        base = name.rsplit(".", 1)[-1]
        if base != name and base in choices:
            return (
                f"unknown {self.what} type '{name}'; write torch names without a prefix: '{base}'"
            )
        return f"unknown {self.what} type '{name}'" + did_you_mean(base, choices)


@functools.cache
def catalog() -> dict[str, Any]:
    """The generated description of torch's classes."""
    text = resources.files("specnet._front").joinpath("catalog.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


_BUILT = {"Sequential": "nn.Sequential", "ModuleDict": "nn.ModuleDict", "Graph": "graph module"}


def name_taken(container: str, name: str) -> str:
    """The error for a child named like an attribute its built container has."""
    return f"'{name}' is already an attribute of the built {_BUILT[container]}; choose another name"


@functools.cache
def attributes(container: str) -> frozenset[str]:
    """Names a built ``Sequential``, ``ModuleDict`` or ``Graph`` has of its own.

    A child named like one (``append``, ``keys``, ``training``) could not be
    attached; validation refuses such names before torch is imported.
    """
    return frozenset(catalog()["attributes"][container])


_UNIT = Range(0, 1)
_AT_LEAST_0 = Range(0)
_AT_LEAST_1 = Range(1)
_ABOVE_0 = Range(0, low_open=True)
TRAIN_RANGES: dict[str, dict[str, dict[str, Range]]] = {
    "optimizers": {
        "*": {
            **dict.fromkeys(("lr", "eps", "weight_decay", "momentum", "lr_decay"), _AT_LEAST_0),
            **dict.fromkeys(("initial_accumulator_value", "momentum_decay"), _AT_LEAST_0),
            "betas": Range(0, 1, high_open=True),
            "rho": _UNIT,
            "alpha": _AT_LEAST_0,
            **dict.fromkeys(("max_iter", "history_size", "ns_steps"), _AT_LEAST_1),
        },
    },
    "schedulers": {
        "*": {
            **dict.fromkeys(("step_size", "T_max", "T_0", "T_mult", "step_size_up"), _AT_LEAST_1),
            **dict.fromkeys(("total_iters", "patience", "cooldown", "threshold"), _AT_LEAST_0),
            "gamma": _ABOVE_0,
            "pct_start": _UNIT,
            "start_factor": Range(0, 1, low_open=True),
            "end_factor": _UNIT,
            "factor": _UNIT,
            "eps": _AT_LEAST_0,
            **dict.fromkeys(("div_factor", "final_div_factor"), _ABOVE_0),
        },
        "ReduceLROnPlateau": {"factor": Range(0, 1, high_open=True)},
    },
    "losses": {
        "*": {
            "label_smoothing": _UNIT,
            "delta": _ABOVE_0,
            "beta": _AT_LEAST_0,
            "eps": _AT_LEAST_0,
        },
    },
}
"""The numbers torch's optimizers, schedulers and losses accept, by section, then by type
(``"*"``: every type of the section that has the argument). An optimizer refuses a
negative ``lr`` when it is made; a scheduler with ``step_size: 0`` divides by zero at its
first step: validation refuses both at the spec line, and the JSON Schema shows them."""


def _numeric(t: Any) -> bool:
    """Whether a range can apply to values of type ``t`` (a number, or a list of numbers)."""
    if isinstance(t, dict) and "list" in t:
        t = t["list"]
    return t in ("int", "float")


def _params(
    entry: Mapping[str, Any], rule: Rule | None = None, ranges: Mapping[str, Range] | None = None
) -> tuple[Param, ...]:
    if rule is not None:
        ranges = {**COMMON_RANGES, **rule.ranges}
    elif ranges is not None:
        ranges = {
            p["name"]: ranges[p["name"]]
            for p in entry["params"]
            if p["name"] in ranges and _numeric(p["type"])
        }
    return tuple(
        Param(
            p["name"],
            p["type"],
            p.get("doc", ""),
            REQUIRED if p.get("required") else p.get("default"),
            ranges.get(p["name"]) if ranges is not None else None,
        )
        for p in entry["params"]
    )


def _torch_attr(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(module), name)


CONTAINERS: dict[str, TypeDef] = {}


def _containers() -> dict[str, TypeDef]:
    node: TypeSpec = "node"
    names: TypeSpec = {"union": ["str", {"list": "str"}]}
    defs = [
        TypeDef(
            "Sequential",
            "container",
            (
                Param(
                    "layers",
                    {"union": [{"list": node}, {"map": node}]},
                    "The layers in call order: a list, or a mapping of names to layers (named children).",
                ),
            ),
            "Layers applied one after another (torch.nn.Sequential).",
        ),
        TypeDef(
            "ModuleList",
            "container",
            (
                Param(
                    "layers",
                    {"list": node},
                    "The layers, applied in order (kept as .layers, an nn.ModuleList).",
                ),
                Param(
                    "between",
                    {"union": [node, "null"]},
                    "A parameter-free layer applied after each layer, e.g. ReLU.",
                    None,
                ),
            ),
            "A list of layers held in an nn.ModuleList and applied in order.",
        ),
        TypeDef(
            "ModuleDict",
            "container",
            (
                Param(
                    "layers",
                    {"map": node},
                    "A mapping of names to layers (kept as .layers, an nn.ModuleDict).",
                ),
                Param(
                    "forward",
                    {"union": [{"list": "str"}, "null"]},
                    "Names of the layers in call order; a name may repeat to reuse that layer. Default: the mapping's order.",
                    None,
                ),
            ),
            "Named layers held in an nn.ModuleDict, called in the order `forward` gives.",
        ),
        TypeDef(
            "Graph",
            "container",
            (
                Param(
                    "inputs",
                    {"list": "str"},
                    "Names of the graph's inputs, in call order.",
                    ["input"],
                ),
                Param(
                    "nodes",
                    {"map": node},
                    "A mapping of node names to layers; each may name its input(s) with `input:` (default: the node before it).",
                ),
                Param(
                    "output",
                    {"union": [names, "null"]},
                    "The node (or list of nodes) whose value the graph returns. Default: the last node.",
                    None,
                ),
                Param(
                    "train_output",
                    {"union": [names, "null"]},
                    "The node (or list of nodes) whose value the graph returns in training mode, "
                    "`output` being returned in eval mode; nodes only it needs run only in training.",
                    None,
                ),
            ),
            "A directed graph of named layers: residual connections, concatenation, several inputs and outputs.",
        ),
    ]
    return {d.name: d for d in defs}


CONTAINERS.update(_containers())


def _held() -> tuple[Param, ...]:
    """The arguments of a tensor a graph holds (``Parameter``, ``Buffer``)."""
    optional: TypeSpec = {"union": ["float", "null"]}
    return (
        Param("shape", {"list": "int"}, "The tensor's full shape (it has no batch dimension)."),
        Param(
            "init",
            {"enum": ["zeros", "ones", "constant", "normal", "trunc_normal", "arange"]},
            "Its initial values: constant reads value, normal and trunc_normal (torch.nn.init) "
            "read mean and std, arange counts 0, 1, ... in order.",
            "zeros",
        ),
        Param("value", optional, "The value of init: constant.", None),
        Param("mean", optional, "The mean of init: normal or trunc_normal; null: 0.", None),
        Param(
            "std",
            optional,
            "The standard deviation of init: normal or trunc_normal; null: 1.",
            None,
        ),
        Param("dtype", {"enum": list(DTYPES)}, "Element type.", "float32"),
    )


def _ops() -> list[TypeDef]:
    """specnet's own parameter-free operations (modules in ``specnet._build.ops``)."""
    ints: TypeSpec = {"list": "int"}
    dim: TypeSpec = {"union": ["int", ints, "null"]}
    specs: list[tuple[str, tuple[Param, ...], str]] = [
        ("Add", (), "Sum of its inputs (same shapes, or broadcastable): a residual connection."),
        ("Mul", (), "Elementwise product of its inputs."),
        (
            "Concat",
            (
                Param(
                    "dim",
                    "int",
                    "Dimension to join along, counting the batch dimension as 0 (1 = channels).",
                    1,
                ),
            ),
            "Concatenates its inputs along `dim` (torch.cat).",
        ),
        (
            "Reshape",
            (
                Param(
                    "shape",
                    ints,
                    "The new shape of ONE sample (the batch dimension is kept); one entry may be -1.",
                ),
            ),
            "Reshapes each sample: x.reshape(x.shape[0], *shape).",
        ),
        (
            "Permute",
            (
                Param(
                    "dims",
                    ints,
                    "The new order of all dimensions, batch included (it must stay first: 0).",
                ),
            ),
            "Reorders dimensions (torch.permute).",
        ),
        (
            "Transpose",
            (
                Param("dim0", "int", "First dimension (batch is 0)."),
                Param("dim1", "int", "Second dimension (batch is 0)."),
            ),
            "Swaps two dimensions (torch.transpose).",
        ),
        (
            "Scale",
            (Param("factor", "float", "The constant to multiply by."),),
            "Multiplies by a constant: x * factor.",
        ),
        (
            "Mean",
            (
                Param(
                    "dim",
                    dim,
                    "Dimension(s) to average over, batch is 0; null averages all but the batch.",
                    None,
                ),
                Param("keepdim", "bool", "Keep the reduced dimensions with size 1.", False),
            ),
            "Mean over dimensions (torch.mean).",
        ),
        (
            "Select",
            (
                Param(
                    "index",
                    "int",
                    "Which element of the tuple to pick (negative counts from the end).",
                ),
            ),
            "Picks one element of a tuple output, e.g. an LSTM's output from (output, (h, c)).",
        ),
        (
            "Index",
            (
                Param("dim", "int", "The dimension to index, batch is 0."),
                Param(
                    "index",
                    "int",
                    "The position to take (negative counts from the end); the dimension is removed.",
                ),
            ),
            "Takes one position along a dimension: x.select(dim, index), e.g. the last time step.",
        ),
        (
            "Narrow",
            (
                Param("dim", "int", "The dimension to cut, batch is 0."),
                Param("start", "int", "The first position kept (negative counts from the end)."),
                Param("length", "int", "How many positions are kept."),
            ),
            "Keeps length positions from start along a dimension: x.narrow(dim, start, length), "
            "i.e. x[:, start:start + length] for dim 1 (a channel slice, a piece of a split).",
        ),
        (
            "Parameter",
            _held(),
            "A learned tensor held by the graph under the node's name (no input, no batch dimension): nn.Parameter.",
        ),
        (
            "Buffer",
            (
                *_held(),
                Param(
                    "persistent",
                    "bool",
                    "Whether the buffer is part of the module's state_dict.",
                    True,
                ),
            ),
            "A tensor held by the graph under the node's name that is not learned (no input, no batch dimension): a registered buffer.",
        ),
        (
            "Expand",
            (),
            "Gives a tensor without a batch dimension (first input, whose first dimension is 1) the batch of the second input: x.expand(like.shape[0], -1, ...).",
        ),
        (
            "Arange",
            (Param("dim", "int", "The dimension whose size counts the positions, batch is 0.", 1),),
            "The positions 0..n-1 of a dimension of its input, n = x.shape[dim]: torch.arange(n), int64, without a batch dimension.",
        ),
        (
            "CausalMask",
            (
                Param("dim", "int", "The sequence dimension T, batch is 0.", 1),
                Param(
                    "dtype",
                    {"enum": list(CAUSAL_DTYPES)},
                    "bool: true where hidden; a float dtype: -inf where hidden, 0 elsewhere.",
                    "bool",
                ),
            ),
            "The [T, T] mask that hides later positions (above the diagonal), without a batch dimension.",
        ),
        (
            "ScaledDotProductAttention",
            (
                Param(
                    "is_causal",
                    "bool",
                    "Hide later keys from each query (no mask input then).",
                    False,
                ),
                Param(
                    "scale",
                    {"union": ["float", "null"]},
                    "The factor of the scores; null: 1 / sqrt(E).",
                    None,
                ),
                Param(
                    "dropout_p",
                    "float",
                    "Dropout probability of the weights, in training only.",
                    0.0,
                ),
            ),
            "torch.nn.functional.scaled_dot_product_attention of (query, key, value[, mask]); a bool mask is true where attended.",
        ),
        (
            "Chunk",
            (
                Param(
                    "chunks", "int", "How many pieces (fewer when the size does not allow them)."
                ),
                Param("dim", "int", "The dimension to cut, batch is 0."),
            ),
            "Cuts a tensor into pieces along dim (torch.chunk): a tuple, pick a piece with Select.",
        ),
        (
            "MatMul",
            (),
            "Matrix product of its two inputs (torch.matmul, a @ b), e.g. of a batch and a learned matrix.",
        ),
        (
            "StochasticDepth",
            (
                Param("p", "float", "Probability of dropping the input (zeroing it) in training."),
                Param(
                    "mode",
                    {"enum": ["row", "batch"]},
                    "row: each sample is dropped or kept; batch: the whole batch at once.",
                ),
            ),
            "Drops its input at random in training and scales the rest by 1 / (1 - p) (torchvision.ops.StochasticDepth); the identity in eval mode. A residual branch's.",
        ),
    ]
    rules = all_rules()
    return [
        TypeDef(
            name,
            "op",
            _ranged(params, rules[name]),
            doc,
            rules[name],
            factory=_torch_attr("specnet._build.ops", name),
        )
        for name, params, doc in specs
    ]


def _ranged(params: tuple[Param, ...], rule: Rule) -> tuple[Param, ...]:
    """An op's arguments with the ranges its rule (or every layer) gives them."""
    ranges = {**COMMON_RANGES, **rule.ranges}
    return tuple(dataclasses.replace(p, range=ranges.get(p.name, p.range)) for p in params)


def _from_catalog(section: str, kind: Kind, module: str) -> Registry:
    what = {"layers": "layer", "losses": "loss", "optimizers": "optimizer"}
    reg = Registry(what.get(section, "scheduler"))
    rules = all_rules() if section == "layers" else {}
    table = TRAIN_RANGES.get(section, {})
    for name, entry in sorted(catalog()[section].items()):
        rule = rules.get(name)
        if section == "layers" and rule is None:
            raise ValueError(f"layer type {name} has no shape rule")
        ranges = {**table.get("*", {}), **table.get(name, {})} if table else None
        reg.add(
            TypeDef(
                name,
                kind,
                _params(entry, rule, ranges),
                entry.get("doc", ""),
                rule,
                _torch_attr(module, name),
                entry.get("stepping"),
            )
        )
    return reg


@functools.cache
def layers() -> Registry:
    """Every type a node may name: torch.nn layers, specnet's ops and registered layers."""
    reg = _from_catalog("layers", "layer", "torch.nn")
    for op in _ops():
        reg.add(op)
    # torch's MultiheadAttention needs (query, key, value); specnet's subclass also
    # takes one input (self-attention), as a layer in a Sequential gets.
    mha = reg["MultiheadAttention"]
    reg.add(
        dataclasses.replace(mha, factory=_torch_attr("specnet._build.ops", "MultiheadAttention")),
        replace=True,
    )
    return reg


def list_layers() -> list[str]:
    """The layer types a spec may name: torch.nn's, specnet's ops and registered ones."""
    return sorted(layers())


@functools.cache
def losses() -> Registry:
    return _from_catalog("losses", "loss", "torch.nn")


@functools.cache
def optimizers() -> Registry:
    return _from_catalog("optimizers", "optimizer", "torch.optim")


_SCHEDULER_STEPS = {"OneCycleLR": "batch", "CyclicLR": "batch", "ReduceLROnPlateau": "metric"}
"""How torch's documentation steps these schedulers; the others step once an epoch."""


_SCHEDULER_FROM_RUN = {"CosineAnnealingLR": {"T_max": "epochs"}}
"""Scheduler arguments torch requires that the run fills in when left out (see
:attr:`TypeDef.from_run`)."""


@functools.cache
def schedulers() -> Registry:
    reg = _from_catalog("schedulers", "scheduler", "torch.optim.lr_scheduler")
    for t in list(reg.values()):
        stepping = t.stepping or _SCHEDULER_STEPS.get(t.name, "epoch")
        filled = _SCHEDULER_FROM_RUN.get(t.name, {})
        params = tuple(
            dataclasses.replace(
                p,
                type={"union": [p.type, "null"]},
                default=None,
                doc=f"{p.doc} Left out: train.{filled[p.name]}.".lstrip(),
            )
            if p.name in filled
            else p
            for p in t.params
        )
        reg.add(
            dataclasses.replace(t, stepping=stepping, params=params, from_run=filled),
            replace=True,
        )
    return reg
