"""The calls a ``forward`` makes inline, as spec nodes.

Each converter reads one traced call (its arguments and the value it computed on the
example) and gives specnet's op or layer that computes the same, or :class:`Same` for a
call that changes nothing a spec sees (``x.contiguous()``), or raises :class:`Refused`.
Shapes are read off the example, so ``x.reshape(B, N, 3, heads, C // heads)`` becomes a
``Reshape`` to the sizes those integers had (the batch kept as it is).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx

from specnet._front.registry import layers

from .leaves import plain, same_as_default
from .problems import Refused

if TYPE_CHECKING:
    from .trace import _Run

__all__ = ["MAKERS", "Op", "Same", "Site", "Split", "Unbind", "convert"]


@dataclass
class Op:
    """A spec node for a call: its type, arguments and the tensors it reads."""

    type: str
    args: dict[str, Any]
    inputs: list[fx.Node]
    name: str | None = None
    batched: bool | None = None
    own: list[fx.Node] = field(default_factory=list)
    """The module's own tensors the layer holds (``self.weight`` read by ``F.linear``)."""
    moved: int = 0
    """Where the call put the batch dimension (its node holds it first): see ``_Run.moved``."""


@dataclass
class Same:
    """A call whose value is its input's, as far as a spec can tell."""

    node: fx.Node
    moved: int = 0


@dataclass
class Split:
    """``x.split(sizes, d)``: no node; each piece it gives is a Narrow of ``x``."""

    node: fx.Node
    dim: int
    parts: list[tuple[int, int]]
    """(start, length) of each piece."""
    size: int


@dataclass
class Unbind:
    """``x.unbind(d)``: no node; each piece it gives is an Index of ``x`` (spec dimension)."""

    node: fx.Node
    dim: int


class Site:
    """One traced call, with the values of its arguments on the example."""

    def __init__(self, run: _Run, node: fx.Node, out: Any) -> None:
        self.run = run
        self.node = node
        self.out = out

    def bind(self, *names: str, **defaults: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The call's arguments by name (``*rest`` gathers the remaining positionals): their
        values on the example, and the traced nodes behind them."""
        raw: dict[str, Any] = {}
        args = list(self.node.args)
        for i, name in enumerate(names):
            if name.startswith("*"):
                rest = tuple(args[i:])
                if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
                    rest = tuple(rest[0])
                raw[name[1:]] = rest
                break
            if i < len(args):
                raw[name] = a = args[i]
                del a
        else:
            if len(args) > len(names):
                raise Refused(f"{self.what()}: more positional arguments than a spec has")
        plain = [n.lstrip("*") for n in names]
        for k, a in self.node.kwargs.items():
            if k not in plain and k not in defaults:
                raise Refused(f"{self.what()}: argument {k!r} has no spec equivalent")
            raw[k] = a
        values: dict[str, Any] = {}
        for name in [*plain, *(d for d in defaults if d not in plain)]:
            if name in raw:
                values[name] = self.run.value(raw[name])
            elif name in defaults:
                values[name] = defaults[name]
            else:
                raise Refused(f"{self.what()}: missing argument {name!r}")
        return values, raw

    def what(self) -> str:
        n = self.node
        if n.op == "call_method":
            return f"Tensor.{n.target}"
        mod = getattr(n.target, "__module__", "") or ""
        name = getattr(n.target, "__name__", str(n.target))
        if mod in ("_operator", "operator"):
            return f"operator {name}"
        mod = mod.replace("torch.nn.functional", "F").replace("torch._C._nn", "F")
        return f"{mod}.{name}" if mod else name

    def tensor(self, raw: dict[str, Any], name: str) -> fx.Node:
        a = raw.get(name)
        if not isinstance(a, fx.Node) or not isinstance(self.run.env.get(a), torch.Tensor):
            raise Refused(f"{self.what()}: {name} must be a tensor of the graph")
        return a

    def batched(self, x: fx.Node) -> bool:
        return self.run.batched.get(x, False)

    def rank(self, x: fx.Node) -> int:
        return int(self.run.env[x].dim())


Converter = Callable[[Site], "Op | Same | Unbind | Split"]
_READ_MOVED = ("getitem", "unbind")
"""The converters that read a tensor whose batch dimension was moved."""
_READ_BATCH = ("reshape", "expand")
"""The converters that may read the batch size (``x.reshape(B, -1)``): they take their
sizes from the example's output, the batch kept as it is."""
FUNCTIONS: dict[Any, Converter] = {}
METHODS: dict[str, Converter] = {}


def on(*targets: Any) -> Callable[[Converter], Converter]:
    def add(fn: Converter) -> Converter:
        for t in targets:
            if isinstance(t, str):
                METHODS[t] = fn
            else:
                FUNCTIONS[t] = fn
        return fn

    return add


def convert(site: Site) -> Op | Same | Unbind | Split:
    n = site.node
    table: dict[Any, Converter] = METHODS if n.op == "call_method" else FUNCTIONS
    fn = table.get(n.target)
    if fn is None:
        raise Refused(f"{site.what()} has no spec equivalent")
    moved = [x for x in site.run.tensor_nodes((n.args, n.kwargs)) if x in site.run.moved]
    if moved and fn.__name__.strip("_") not in _READ_MOVED:
        raise Refused(f"{site.what()}: of a tensor whose batch dimension a permute moved")
    found: list[fx.Node] = []
    fx.node.map_arg((n.args, n.kwargs), lambda x: found.append(x) or x)  # type: ignore[func-returns-value]
    if any(x in site.run.batch_sized for x in found) and fn.__name__.strip("_") not in _READ_BATCH:
        raise Refused(
            f"{site.what()}: uses the batch size as a number; a spec's arguments are constants"
        )
    return fn(site)


def _dim(d: int, rank: int) -> int:
    return d % rank if d < 0 else d


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- arithmetic ------------------------------------------------------------------------
@on(operator.add, operator.iadd, torch.add, "add", "add_")
def _add(s: Site) -> Op | Same:
    v, raw = s.bind("input", "other", alpha=1)
    a, b = raw["input"], raw["other"]
    tensors = [
        x for x in (a, b) if isinstance(x, fx.Node) and isinstance(s.run.env[x], torch.Tensor)
    ]
    if len(tensors) == 2 and v["alpha"] == 1:
        return Op("Add", {}, tensors, "add")
    constant = v["other"] if tensors and tensors[0] is a else v["input"]
    if len(tensors) == 1 and _number(constant) and constant == 0:
        return Same(tensors[0])
    raise Refused(f"{s.what()}: a spec adds tensors (Add); a constant added has no node")


@on(operator.mul, operator.imul, torch.mul, "mul", "mul_")
def _mul(s: Site) -> Op | Same:
    v, raw = s.bind("input", "other")
    a, b = raw["input"], raw["other"]
    ta = isinstance(a, fx.Node) and isinstance(v["input"], torch.Tensor)
    tb = isinstance(b, fx.Node) and isinstance(v["other"], torch.Tensor)
    if ta and tb:
        return Op("Mul", {}, [a, b], "mul")
    if ta and _number(v["other"]):
        return _scale(s, a, float(v["other"]))
    if tb and _number(v["input"]):
        return _scale(s, b, float(v["input"]))
    raise Refused(f"{s.what()}: of these operands")


def _scale(s: Site, x: fx.Node, factor: float) -> Op | Same:
    if not s.run.env[x].is_floating_point():
        raise Refused(f"{s.what()}: scales a tensor of {s.run.env[x].dtype}; Scale is for floats")
    if factor == 1.0:
        return Same(x)
    return Op("Scale", {"factor": factor}, [x], "scale")


@on(operator.truediv, operator.itruediv, torch.div, "div", "div_")
def _div(s: Site) -> Op | Same:
    v, raw = s.bind("input", "other", rounding_mode=None)
    if (
        isinstance(raw["input"], fx.Node)
        and isinstance(v["input"], torch.Tensor)
        and _number(v["other"])
        and v["rounding_mode"] is None
        and v["other"] != 0
    ):
        return _scale(s, raw["input"], 1.0 / float(v["other"]))
    raise Refused(f"{s.what()}: a spec divides by a constant only (Scale)")


@on(operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm")
def _matmul(s: Site) -> Op:
    _, raw = s.bind("input", "other")
    return Op("MatMul", {}, [s.tensor(raw, "input"), s.tensor(raw, "other")], "matmul")


# -- shapes ----------------------------------------------------------------------------
@on(torch.flatten, "flatten")
def _flatten(s: Site) -> Op | Same:
    v, raw = s.bind("input", "start_dim", "end_dim", start_dim=0, end_dim=-1)
    x = s.tensor(raw, "input")
    rank = s.rank(x)
    start, end = _dim(v["start_dim"], rank), _dim(v["end_dim"], rank)
    if s.batched(x) and start == 0:
        raise Refused(f"{s.what()}: flattens the batch dimension (start_dim 0)")
    if start == end:
        return Same(x)
    args: dict[str, Any] = {}
    if start != 1:
        args["start_dim"] = start
    if v["end_dim"] != -1:
        args["end_dim"] = v["end_dim"] if v["end_dim"] < 0 else end
    return Op("Flatten", args, [x], "flatten")


@on(
    torch.reshape,
    "reshape",
    "view",
    torch.squeeze,
    "squeeze",
    torch.unsqueeze,
    "unsqueeze",
    "unflatten",
    torch.unflatten,
)
def _reshape(s: Site) -> Op | Same:
    x = s.node.args[0]
    if not isinstance(x, fx.Node) or not isinstance(s.run.env.get(x), torch.Tensor):
        raise Refused(f"{s.what()}: of a value that is not a tensor")
    if any(isinstance(s.run.value(a), torch.dtype) for a in s.node.args[1:]):
        raise Refused(f"{s.what()}: a view as another dtype")
    before, after = s.run.env[x].shape, s.out.shape
    if not s.batched(x):
        raise Refused(f"{s.what()}: reshapes a tensor without a batch dimension")
    if len(after) == 0 or after[0] != before[0]:
        raise Refused(
            f"{s.what()}: moves the batch dimension (from {list(before)} to {list(after)})"
        )
    if after == before:
        return Same(x)
    return Op("Reshape", {"shape": [int(d) for d in after[1:]]}, [x], "reshape")


@on(torch.permute, "permute")
def _permute(s: Site) -> Op | Same:
    v, raw = s.bind("input", "*dims")
    x = s.tensor(raw, "input")
    dims = v["dims"]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    rank = s.rank(x)
    dims = [_dim(int(d), rank) for d in dims]
    if not s.batched(x):
        raise Refused(f"{s.what()}: of a tensor without a batch dimension")
    moved = dims.index(0)
    if moved:  # the node keeps the batch first; only an Index next to it may read it
        dims = [0, *(d for d in dims if d != 0)]
    if dims == sorted(dims):
        return Same(x, moved)
    return Op("Permute", {"dims": dims}, [x], "permute", moved=moved)


@on(torch.transpose, "transpose")
def _transpose(s: Site) -> Op | Same:
    v, raw = s.bind("input", "dim0", "dim1")
    x = s.tensor(raw, "input")
    rank = s.rank(x)
    d0, d1 = _dim(v["dim0"], rank), _dim(v["dim1"], rank)
    if s.batched(x) and 0 in (d0, d1):
        raise Refused(f"{s.what()}: moves the batch dimension")
    if not s.batched(x):
        raise Refused(f"{s.what()}: of a tensor without a batch dimension")
    if d0 == d1:
        return Same(x)
    return Op("Transpose", {"dim0": min(d0, d1), "dim1": max(d0, d1)}, [x], "transpose")


@on("detach", torch.detach)
def _detach(s: Site) -> Same:
    raise Refused(f"{s.what()} stops gradients in training; a spec has no node for that")


@on("contiguous", "clone", torch.clone, torch.Tensor.contiguous)
def _same(s: Site) -> Same:
    x = s.node.args[0]
    assert isinstance(x, fx.Node)
    return Same(x)


@on("to", "type_as", "float")
def _to(s: Site) -> Same:
    x = s.node.args[0]
    assert isinstance(x, fx.Node)
    if s.out.dtype != s.run.env[x].dtype:
        raise Refused(f"{s.what()}: converts the dtype inside forward")
    return Same(x)


@on(operator.getitem)
def _getitem(s: Site) -> Op | Same:
    src, index = s.node.args[0], s.run.value(s.node.args[1])
    assert isinstance(src, fx.Node)
    if src in s.run.pieces:  # x.split(...)[i]
        piece = s.run.pieces[src]
        if not isinstance(index, int):
            raise Refused(f"{s.what()}: a slice of a split")
        start, length = piece.parts[index]
        return _narrow(piece.node, piece.dim, start, length, piece.size)
    if src in s.run.unbound:
        whole, dim = s.run.unbound[src]
        if not isinstance(index, int):
            raise Refused(f"{s.what()}: a slice of an unbind")
        return Op("Index", {"dim": dim, "index": index}, [whole], "index", batched=s.batched(whole))
    value = s.run.env[src]
    moved = s.run.moved.get(src, 0)
    if moved:
        if moved != 1 or not isinstance(index, int) or isinstance(index, bool):
            raise Refused(f"{s.what()}: of a tensor whose batch dimension a permute moved")
        return Op("Index", {"dim": 1, "index": index}, [src], "index", batched=True)
    if isinstance(value, (tuple, list)):
        if not isinstance(index, int):
            raise Refused(f"{s.what()}: a slice of a tuple")
        return Op("Select", {"index": index}, [src], "select")
    if not s.batched(src):
        raise Refused(f"{s.what()}: indexes a tensor without a batch dimension (a learned tensor)")
    if not isinstance(index, tuple):
        index = (index,)
    # x[:, 0] and x[..., -1]: one position along one dimension (Index)
    rank = value.dim()
    if Ellipsis in index:
        i = index.index(Ellipsis)
        fill = (slice(None),) * (rank - len(index) + 1)
        index = index[:i] + fill + index[i + 1 :]
    full = [i for i, e in enumerate(index) if e != slice(None)]
    if len(full) == 1 and isinstance(index[full[0]], int) and not isinstance(index[full[0]], bool):
        dim = full[0]
        if dim == 0 and s.batched(src):
            raise Refused(f"{s.what()}: indexes the batch dimension")
        return Op("Index", {"dim": dim, "index": index[dim]}, [src], "index")
    if any(isinstance(e, torch.Tensor) for e in index):
        raise Refused(f"{s.what()}: indexing with a tensor (a gather) has no spec equivalent")
    if len(full) == 1 and isinstance(index[full[0]], slice) and index[full[0]].step in (None, 1):
        dim = full[0]  # x[:, a:b]: a Narrow
        if dim == 0 and s.batched(src):
            raise Refused(f"{s.what()}: slices the batch dimension")
        size = value.shape[dim]
        first, last, _ = index[dim].indices(size)
        return _narrow(src, dim, first, max(last - first, 0), size)
    shown = ", ".join(_index_text(e) for e in index)
    raise Refused(f"{s.what()}: x[{shown}] has no spec equivalent (Index takes one position)")


def _index_text(e: Any) -> str:
    if isinstance(e, slice):
        parts = ["" if v is None else str(v) for v in (e.start, e.stop)]
        return ":".join(parts) + (f":{e.step}" if e.step is not None else "")
    return "..." if e is Ellipsis else repr(e)


def _along(s: Site, x: fx.Node, dim: int) -> int:
    """The dimension a cut (split, chunk, unbind) goes along: not the batch's, and of a
    tensor that has one."""
    if not s.batched(x):
        raise Refused(f"{s.what()}: of a tensor without a batch dimension (a learned tensor)")
    d = _dim(dim, s.rank(x))
    if d == 0:
        raise Refused(f"{s.what()}: along the batch dimension")
    return d


def _narrow(src: fx.Node, dim: int, start: int, length: int, size: int) -> Op | Same:
    if start == 0 and length == size:
        return Same(src)
    return Op("Narrow", {"dim": dim, "start": start, "length": length}, [src], "narrow")


@on(torch.split, "split")
def _split(s: Site) -> Split:
    v, raw = s.bind("input", "split_size_or_sections", "dim", dim=0)
    x = s.tensor(raw, "input")
    dim = _along(s, x, v["dim"])
    size = int(s.run.env[x].shape[dim])
    sizes = v["split_size_or_sections"]
    if isinstance(sizes, int):
        sizes = [min(sizes, size - a) for a in range(0, size, sizes)]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return Split(x, dim, [(a, int(n)) for a, n in zip(starts, sizes, strict=True)], size)


@on(torch.unbind, "unbind")
def _unbind(s: Site) -> Unbind:
    v, raw = s.bind("input", "dim", dim=0)
    x = s.tensor(raw, "input")
    moved = s.run.moved.get(x, 0)
    if moved:  # [3, B, ...].unbind(0): the node holds [B, 3, ...]
        if moved != 1 or _dim(v["dim"], s.rank(x)) != 0:
            raise Refused(f"{s.what()}: of a tensor whose batch dimension a permute moved")
        return Unbind(x, 1)
    return Unbind(x, _along(s, x, v["dim"]))


@on(torch.chunk, "chunk")
def _chunk(s: Site) -> Op:
    v, raw = s.bind("input", "chunks", "dim", dim=0)
    x = s.tensor(raw, "input")
    dim = _along(s, x, v["dim"])
    return Op("Chunk", {"chunks": v["chunks"], "dim": dim}, [x], "chunk")


@on("expand")
def _expand(s: Site) -> Op:
    _, raw = s.bind("input", "*sizes")
    x = s.tensor(raw, "input")
    sizes = list(raw["sizes"])
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = list(sizes[0])
    value = s.run.env[x]
    if s.batched(x) or value.shape[0] != 1:
        raise Refused(f"{s.what()}: expands what is not a learned tensor of first size 1")
    first = sizes[0]
    like = s.run.dim_of.get(first) if isinstance(first, fx.Node) else None
    if like is None or like[1] != 0 or not s.batched(like[0]):
        raise Refused(f"{s.what()}: the first size must be a batch size (x.shape[0])")
    if len(sizes) != value.dim():
        raise Refused(f"{s.what()}: to {len(sizes)} dimensions from {value.dim()}")
    for size, d in zip(sizes[1:], value.shape[1:], strict=True):
        if s.run.value(size) not in (-1, d):
            raise Refused(f"{s.what()}: expands a dimension other than the first")
    return Op("Expand", {}, [x, like[0]], "expand", batched=True)


# -- reductions, concatenation ---------------------------------------------------------
@on(torch.mean, "mean")
def _mean(s: Site) -> Op:
    v, raw = s.bind("input", "dim", "keepdim", dim=None, keepdim=False, dtype=None)
    x = s.tensor(raw, "input")
    if v["dtype"] is not None:
        raise Refused(f"{s.what()}: with a dtype")
    rank = s.rank(x)
    dim = v["dim"]
    dims = list(range(rank)) if dim is None else dim if isinstance(dim, (list, tuple)) else [dim]
    dims = [_dim(int(d), rank) for d in dims]
    if 0 in dims and s.batched(x):
        raise Refused(f"{s.what()}: averages over the batch dimension")
    args: dict[str, Any] = {"dim": dims[0] if len(dims) == 1 else dims}
    if v["keepdim"]:
        args["keepdim"] = True
    return Op("Mean", args, [x], "mean")


@on(torch.cat, torch.concat, torch.concatenate)
def _cat(s: Site) -> Op | Same:
    v, raw = s.bind("tensors", "dim", dim=0)
    parts = raw["tensors"]
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, fx.Node) for p in parts):
        raise Refused(f"{s.what()}: of a list the graph does not hold")
    if len(parts) == 1:
        return Same(parts[0])
    rank = s.rank(parts[0])
    dim = _dim(v["dim"], rank)
    if dim == 0 and any(s.batched(p) for p in parts):
        raise Refused(f"{s.what()}: joins along the batch dimension")
    return Op("Concat", {} if dim == 1 else {"dim": dim}, list(parts), "cat")


# -- layers written as functions ---------------------------------------------------------
def _layer(kind: str, names: tuple[str, ...], defaults: dict[str, Any]) -> Converter:
    """A functional call that is a parameter-free layer: ``F.relu(x)`` is ``ReLU``.

    ``names`` are the function's arguments after the input, in order, and ``defaults``
    its defaults (torch's signature); the layer keeps those of its own arguments that
    differ from the layer's defaults (the registry's).
    """

    def conv(s: Site) -> Op | Same:
        v, raw = s.bind("input", *names, **defaults)
        x = s.tensor(raw, "input")
        train = s.run.train_args.get(s.node)
        if "training" in v and train is not None and not train.get("training", True):
            return Same(x)  # training=False in training mode too: no dropout in any mode
        t = layers()[kind]
        args: dict[str, Any] = {}
        for k, value in v.items():
            p = t.by_name.get(k)
            if k in ("input", "training", "_stacklevel"):
                continue
            if p is None:
                if value != defaults.get(k):
                    raise Refused(f"{s.what()}: {k}={value!r} has no spec equivalent")
                continue
            value = plain(value)
            if not same_as_default(p, value):
                args[k] = value
        return Op(kind, args, [x], kind.lower())

    return conv


_INPLACE = {"inplace": False}
_POOL = {"stride": None, "padding": 0, "ceil_mode": False}
_FUNCTIONAL: list[tuple[str, tuple[Any, ...], tuple[str, ...], dict[str, Any]]] = [
    ("ReLU", (F.relu, torch.relu, "relu"), ("inplace",), _INPLACE),
    ("ReLU", (F.relu_, torch.relu_, "relu_"), (), {}),
    ("ReLU6", (F.relu6,), ("inplace",), _INPLACE),
    ("GELU", (F.gelu, "gelu"), (), {"approximate": "none"}),
    ("SiLU", (F.silu,), ("inplace",), _INPLACE),
    ("Hardswish", (F.hardswish,), ("inplace",), _INPLACE),
    ("Hardsigmoid", (F.hardsigmoid,), ("inplace",), _INPLACE),
    ("Mish", (F.mish,), ("inplace",), _INPLACE),
    ("Sigmoid", (torch.sigmoid, F.sigmoid, "sigmoid"), (), {}),
    ("Tanh", (torch.tanh, F.tanh, "tanh"), (), {}),
    (
        "LeakyReLU",
        (F.leaky_relu,),
        ("negative_slope", "inplace"),
        {"negative_slope": 0.01, **_INPLACE},
    ),
    ("ELU", (F.elu,), ("alpha", "inplace"), {"alpha": 1.0, **_INPLACE}),
    (
        "Softmax",
        (F.softmax, torch.softmax, "softmax"),
        ("dim", "_stacklevel", "dtype"),
        {"_stacklevel": 3, "dtype": None},
    ),
    (
        "LogSoftmax",
        (F.log_softmax, torch.log_softmax, "log_softmax"),
        ("dim", "_stacklevel", "dtype"),
        {"_stacklevel": 3, "dtype": None},
    ),
    ("AdaptiveAvgPool1d", (F.adaptive_avg_pool1d,), ("output_size",), {}),
    ("AdaptiveAvgPool2d", (F.adaptive_avg_pool2d,), ("output_size",), {}),
    ("AdaptiveAvgPool3d", (F.adaptive_avg_pool3d,), ("output_size",), {}),
    (
        "AdaptiveMaxPool2d",
        (F.adaptive_max_pool2d,),
        ("output_size", "return_indices"),
        {"return_indices": False},
    ),
    (
        "AvgPool1d",
        (F.avg_pool1d,),
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
        {**_POOL, "count_include_pad": True},
    ),
    (
        "AvgPool2d",
        (F.avg_pool2d,),
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
        {**_POOL, "count_include_pad": True, "divisor_override": None},
    ),
    (
        "MaxPool1d",
        (F.max_pool1d,),
        ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
        {**_POOL, "dilation": 1, "return_indices": False},
    ),
    (
        "MaxPool2d",
        (F.max_pool2d,),
        ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
        {**_POOL, "dilation": 1, "return_indices": False},
    ),
    (
        "Dropout",
        (F.dropout,),
        ("p", "training", "inplace"),
        {"p": 0.5, "training": True, **_INPLACE},
    ),
]
"""torch's functions that are a parameter-free layer: the layer, the functions (and Tensor
methods), their arguments after the input and their defaults."""

for _kind, _targets, _names, _defaults in _FUNCTIONAL:
    on(*_targets)(_layer(_kind, _names, _defaults))


@on(F.scaled_dot_product_attention)
def _sdpa(s: Site) -> Op:
    v, raw = s.bind(
        "query",
        "key",
        "value",
        "attn_mask",
        "dropout_p",
        "is_causal",
        "scale",
        "enable_gqa",
        attn_mask=None,
        dropout_p=0.0,
        is_causal=False,
        scale=None,
        enable_gqa=False,
    )
    if v["enable_gqa"]:
        raise Refused(f"{s.what()}: enable_gqa")
    inputs = [s.tensor(raw, k) for k in ("query", "key", "value")]
    if v["attn_mask"] is not None:
        inputs.append(s.tensor(raw, "attn_mask"))
    v.update(s.run.train_args.get(s.node, {}))  # dropout_p as training mode has it
    args = {k: v[k] for k in ("is_causal", "scale", "dropout_p") if v[k] not in (False, None, 0.0)}
    return Op("ScaledDotProductAttention", args, inputs, "attention")


@on(F.interpolate)
def _interpolate(s: Site) -> Op:
    v, raw = s.bind(
        "input",
        "size",
        "scale_factor",
        "mode",
        "align_corners",
        "recompute_scale_factor",
        "antialias",
        size=None,
        scale_factor=None,
        mode="nearest",
        align_corners=None,
        recompute_scale_factor=None,
        antialias=False,
    )
    if v["antialias"] or v["recompute_scale_factor"]:
        raise Refused(f"{s.what()}: antialias and recompute_scale_factor have no spec equivalent")
    args: dict[str, Any] = {"mode": v["mode"]} if v["mode"] != "nearest" else {}
    if v["size"] is not None:
        args["size"] = plain(v["size"])
    else:
        args["scale_factor"] = plain(v["scale_factor"])
    if v["align_corners"] is not None:
        args["align_corners"] = v["align_corners"]
    return Op("Upsample", args, [s.tensor(raw, "input")], "upsample")


@on(F.pad)
def _pad(s: Site) -> Op:
    v, raw = s.bind("input", "pad", "mode", "value", mode="constant", value=None)
    pad = list(v["pad"])
    n = len(pad) // 2
    if len(pad) % 2 or not 1 <= n <= 3:
        raise Refused(
            f"{s.what()}: pads {len(pad)} sizes; a spec's padding layers pad 1 to 3 dimensions"
        )
    x = s.tensor(raw, "input")
    mode = v["mode"]
    if mode == "constant":
        value = v["value"] or 0.0
        if value == 0:
            return Op(f"ZeroPad{n}d", {"padding": pad}, [x], "pad")
        return Op(f"ConstantPad{n}d", {"padding": pad, "value": float(value)}, [x], "pad")
    kinds = {"reflect": "Reflection", "replicate": "Replication", "circular": "Circular"}
    if mode not in kinds:
        raise Refused(f"{s.what()}: mode {mode!r}")
    return Op(f"{kinds[mode]}Pad{n}d", {"padding": pad}, [x], "pad")


# -- positions and masks ---------------------------------------------------------------
MAKERS = frozenset({torch.arange})
"""Functions that make a tensor from sizes alone and are a node when those sizes are a
tensor's (``torch.arange(x.shape[1])``)."""


@on(torch.arange)
def _arange(s: Site) -> Op:
    n = s.node.args[0] if s.node.args else s.node.kwargs.get("end")
    src = s.run.dim_of.get(n) if isinstance(n, fx.Node) else None
    if src is None or len(s.node.args) > 1 or s.out.dtype != torch.int64:
        raise Refused(
            f"{s.what()}: a spec's Arange counts the positions of a dimension (x.shape[d])"
        )
    return Op(
        "Arange", {} if src[1] == 1 else {"dim": src[1]}, [src[0]], "positions", batched=False
    )


@on("triu")
def _triu(s: Site) -> Op:
    made = s.node.args[0]
    diagonal = (
        s.run.value(s.node.args[1]) if len(s.node.args) > 1 else s.node.kwargs.get("diagonal", 0)
    )
    if not isinstance(made, fx.Node) or made not in s.run.made or diagonal != 1:
        raise Refused(
            f"{s.what()}: a spec's CausalMask is torch.ones(T, T, dtype=bool).triu(1) or torch.full((T, T), -inf).triu(1)"
        )
    sizes = [a for a in made.args if isinstance(a, fx.Node)]
    if made.args and isinstance(made.args[0], (tuple, list)):
        sizes = [a for a in made.args[0] if isinstance(a, fx.Node)]
    src = s.run.dim_of.get(sizes[0]) if sizes else None
    value = s.out
    if src is None or value.dim() != 2:
        raise Refused(f"{s.what()}: a mask not sized by a dimension of the input")
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype == "bool":
        ok = bool((value == torch.ones_like(value).triu(1)).all())
    else:
        ok = bool(torch.isneginf(value).triu(1).sum() == value.shape[0] * (value.shape[0] - 1) // 2)
    if not ok:
        raise Refused(f"{s.what()}: of a tensor that is not all ones (bool) or -inf")
    args: dict[str, Any] = {}
    if src[1] != 1:
        args["dim"] = src[1]
    if dtype != "bool":
        args["dtype"] = dtype
    return Op("CausalMask", args, [src[0]], "mask", batched=False)


# -- functional layers on a module's own tensors -------------------------------------------
def _own(s: Site, raw: dict[str, Any], *names: str) -> list[fx.Node]:
    """The module's own tensors (``self.weight``) among these arguments; others refuse."""
    out: list[fx.Node] = []
    for name in names:
        a = raw.get(name)
        if a is None or s.run.value(a) is None:
            continue
        if not (isinstance(a, fx.Node) and a.op == "get_attr" and "." not in str(a.target)):
            raise Refused(f"{s.what()}: its {name} is not a tensor of the module")
        out.append(a)
    return out


# Their arguments are given as the call has them; the trace drops torch's defaults and what
# shape inference gives back (leaves.tidy), as for any layer.
@on(F.layer_norm)
def _layer_norm(s: Site) -> Op:
    v, raw = s.bind(
        "input", "normalized_shape", "weight", "bias", "eps", weight=None, bias=None, eps=1e-5
    )
    args = {
        "normalized_shape": plain(v["normalized_shape"]),
        "eps": v["eps"],
        "elementwise_affine": v["weight"] is not None,
        "bias": v["bias"] is not None or v["weight"] is None,
    }
    own = _own(s, raw, "weight", "bias")
    return Op("LayerNorm", args, [s.tensor(raw, "input")], "norm", own=own)


@on(F.group_norm)
def _group_norm(s: Site) -> Op:
    v, raw = s.bind(
        "input", "num_groups", "weight", "bias", "eps", weight=None, bias=None, eps=1e-5
    )
    args = {"num_groups": v["num_groups"], "eps": v["eps"], "affine": v["weight"] is not None}
    own = _own(s, raw, "weight", "bias")
    return Op("GroupNorm", args, [s.tensor(raw, "input")], "norm", own=own)


@on(F.linear)
def _linear(s: Site) -> Op:
    v, raw = s.bind("input", "weight", "bias", bias=None)
    args = {"out_features": int(v["weight"].shape[0]), "bias": v["bias"] is not None}
    own = _own(s, raw, "weight", "bias")
    return Op("Linear", args, [s.tensor(raw, "input")], "linear", own=own)


@on(F.batch_norm)
def _batch_norm(s: Site) -> Op:
    v, raw = s.bind(
        "input",
        "running_mean",
        "running_var",
        "weight",
        "bias",
        "training",
        "momentum",
        "eps",
        weight=None,
        bias=None,
        training=False,
        momentum=0.1,
        eps=1e-5,
    )
    x = s.tensor(raw, "input")
    rank = s.rank(x)
    kind = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}.get(rank)
    if kind is None or v["training"]:
        raise Refused(f"{s.what()}: of a rank-{rank} tensor, or in training mode")
    args = {
        "eps": v["eps"],
        "affine": v["weight"] is not None,
        "track_running_stats": v["running_mean"] is not None,
        # the module's own momentum: in eval mode forward passes none
        "momentum": getattr(s.run.m, "momentum", v["momentum"]),
    }
    own = _own(s, raw, "running_mean", "running_var", "weight", "bias")
    return Op(kind, args, [x], "norm", own=own)


@on(F.conv1d, F.conv2d, F.conv3d)
def _conv(s: Site) -> Op:
    v, raw = s.bind(
        "input",
        "weight",
        "bias",
        "stride",
        "padding",
        "dilation",
        "groups",
        bias=None,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
    )
    w = v["weight"]
    args = {
        "out_channels": int(w.shape[0]),
        "kernel_size": list(w.shape[2:]),
        **{k: plain(v[k]) for k in ("stride", "padding", "dilation", "groups")},
        "bias": v["bias"] is not None,
    }
    own = _own(s, raw, "weight", "bias")
    return Op(f"Conv{w.dim() - 2}d", args, [s.tensor(raw, "input")], "conv", own=own)
