"""The validated spec: plain, immutable data that the compiler reads.

Blocks are expanded and ``repeat`` unrolled, so every node here is either a
registered layer or one of the four containers. Each node keeps the path of
the spec text it came from, for errors found later (shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import Path, did_you_mean
from .source import SourceMap

__all__ = [
    "DTYPES",
    "DTYPE_ALIASES",
    "Graph",
    "GraphNode",
    "Layer",
    "ModuleDict",
    "ModuleList",
    "Node",
    "NodeRef",
    "Sequential",
    "Spec",
    "TensorSpec",
    "unknown_dtype",
]

DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
"""The dtypes a spec may name, each by torch's canonical name (``torch.int64``)."""

DTYPE_ALIASES = {
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "fp32": "float32",
    "fp64": "float64",
    "fp16": "float16",
    "bf16": "bfloat16",
}
"""Other names of those dtypes (torch's ``torch.long``, the ``precision`` names): refused
with the canonical name suggested, so that each dtype has one spelling in spec files (a
diff, a search or a schema-aware editor sees one name)."""


def unknown_dtype(value: Any, choices: tuple[str, ...] = DTYPES) -> str:
    """The message for a dtype that is not one of ``choices``: the names, and the one meant.

    Wherever a spec names a dtype (an input's ``dtype``, a Parameter's, a Buffer's, an
    op's), this is what it says, so an alias such as ``long`` gets ``int64`` everywhere.
    """
    names = ", ".join(choices)
    if not isinstance(value, str):
        return f"expected a dtype name ({names}), got {str(value).lower()}"
    text = value.removeprefix("torch.")
    meant = DTYPE_ALIASES.get(text, text)
    if meant in DTYPES and meant not in choices:
        return f"dtype '{value}' is not allowed here: the dtypes here are {names}"
    hint = f"; did you mean '{meant}'?" if meant in choices else did_you_mean(text, choices)
    return f"unknown dtype '{value}' (the dtypes are {names}){hint}"


@dataclass(frozen=True)
class Node:
    path: Path
    notes: tuple[str, ...] = field(default=(), kw_only=True)
    """Extra context for errors, e.g. which block use this node came from."""
    used_at: tuple[Path, ...] = field(default=(), kw_only=True)
    """Where the blocks whose body this node is were used (``{type: ConvBNReLU, ...}``),
    the outermost first: a block's body may itself be a use of another block."""


@dataclass(frozen=True)
class Layer(Node):
    """A registered layer or op, with the arguments the spec gave (inferred ones absent)."""

    type: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class Sequential(Node):
    children: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class ModuleList(Node):
    children: tuple[Node, ...]
    between: Node | None = None


@dataclass(frozen=True)
class ModuleDict(Node):
    children: tuple[tuple[str, Node], ...]
    forward: tuple[str, ...]


@dataclass(frozen=True)
class NodeRef:
    """A graph node's (or input's) value passed as a keyword argument (``call: {attn_mask:
    mask}``)."""

    name: str


@dataclass(frozen=True)
class GraphNode:
    name: str
    node: Node
    inputs: tuple[str, ...]
    call: tuple[tuple[str, Any], ...] = ()
    """Keyword arguments of the node's ``forward`` (a layer's): constants, or :class:`NodeRef`."""

    @property
    def reads(self) -> tuple[str, ...]:
        """The names whose values the node reads: its inputs, then its keyword tensors."""
        return (*self.inputs, *(v.name for _, v in self.call if isinstance(v, NodeRef)))


@dataclass(frozen=True)
class Graph(Node):
    inputs: tuple[str, ...]
    nodes: tuple[GraphNode, ...]
    outputs: tuple[str, ...]
    tuple_output: bool
    """Whether the graph returns a tuple (``output`` was a list)."""
    train_outputs: tuple[str, ...] = ()
    """What the graph returns in training mode (``train_output``), if that differs."""
    train_tuple: bool = False
    """Whether it returns a tuple in training mode (``train_output`` was a list)."""


class TensorSpec(BaseModel):
    """Shape (of one sample, no batch dimension) and dtype of a model input.

    An input declared ``batch: false`` has no batch dimension: ``shape`` is its full shape.
    """

    model_config = ConfigDict(frozen=True)

    shape: tuple[int, ...]
    dtype: str = "float32"
    batch: bool = True


class Spec(BaseModel):
    """A validated spec, ready to build."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    version: int = 1
    name: str | None = None
    inputs: dict[str, TensorSpec]
    """The model's inputs by name; a spec with one unnamed input calls it ``input``."""
    model: Node
    train: Any = None
    """The validated ``train:`` section (a :class:`specnet.TrainSpec`), if any."""
    data: dict[str, Any]
    """The spec as written (blocks unexpanded), for run folders and checkpoints."""
    source: SourceMap

    @property
    def variant(self) -> str | None:
        """The variant chosen (``variant:``, ``--variant``, ``variant=``), if any."""
        chosen = self.data.get("variant") if isinstance(self.data, dict) else None
        return chosen if isinstance(chosen, str) else None

    @property
    def variants(self) -> list[str]:
        """The names of the spec's ``variants:``."""
        found = self.data.get("variants") if isinstance(self.data, dict) else None
        return [str(v) for v in found] if isinstance(found, dict) else []

    @property
    def input(self) -> TensorSpec:
        """The single input (error if the model takes several)."""
        if len(self.inputs) != 1:
            raise ValueError(f"this spec has {len(self.inputs)} inputs: {list(self.inputs)}")
        return next(iter(self.inputs.values()))
