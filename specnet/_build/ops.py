"""specnet's own operations: the inline tensor code of hand-written ``forward``s, as modules.

Each is parameter-free, traceable (``torch.compile``, ``torch.fx``) and, except
``Select`` and ``Chunk``, scriptable (``torch.jit.script``). Operations with several inputs
take them as separate arguments, in the order the spec lists them; TorchScript has no
``*args``, so they take up to eight (``rules.base.MAX_INPUTS``) as optional arguments.

A built graph writes most of them inline instead (:data:`INLINE`), as a hand-written
``forward`` has them, computing what their modules here compute.

``Parameter`` and ``Buffer`` are no modules: a :class:`Held` tensor, which the graph's
module registers under the node's name (``self.pos_embedding``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specnet._front.rules.base import TensorType, Value

__all__ = [
    "INLINE",
    "Add",
    "Arange",
    "Buffer",
    "CausalMask",
    "Chunk",
    "Concat",
    "Expand",
    "Held",
    "Index",
    "MatMul",
    "Mean",
    "Mul",
    "MultiheadAttention",
    "Narrow",
    "Parameter",
    "Permute",
    "Reshape",
    "Scale",
    "ScaledDotProductAttention",
    "Select",
    "StochasticDepth",
    "Transpose",
]


Inline = Callable[[Mapping[str, Any], Sequence[str], Sequence[Value]], str]
"""How an op is written in generated code: ``(arguments, input expressions, input values)
-> expression``, the arguments with their defaults filled in."""


def _size(x: str, dim: int) -> str:
    return f"{x}.shape[{dim}]"


def _expand(args: Mapping[str, Any], xs: Sequence[str], values: Sequence[Value]) -> str:
    x = values[0]
    assert isinstance(x, TensorType)
    rest = ", -1" * (len(x.shape) - 1)
    return f"{xs[0]}.expand({_size(xs[1], 0)}{rest})"


def _causal_mask(args: Mapping[str, Any], xs: Sequence[str], values: Sequence[Value]) -> str:
    n, where = _size(xs[0], args["dim"]), f"device={xs[0]}.device"
    if args["dtype"] == "bool":
        return f"torch.ones({n}, {n}, dtype=torch.bool, {where}).triu(1)"
    return f'torch.full(({n}, {n}), float("-inf"), dtype=torch.{args["dtype"]}, {where}).triu(1)'


def _attention(args: Mapping[str, Any], xs: Sequence[str], values: Sequence[Value]) -> str:
    items = list(xs[:3])
    if len(xs) > 3:
        items.append(f"attn_mask={xs[3]}")
    if args["dropout_p"]:
        items.append(f"dropout_p={args['dropout_p']!r} if self.training else 0.0")
    if args["is_causal"]:
        items.append("is_causal=True")
    if args["scale"] is not None:
        items.append(f"scale={_number(args['scale'], 'float32')}")
    return f"F.scaled_dot_product_attention({', '.join(items)})"


INLINE: dict[str, Inline] = {
    "Add": lambda args, xs, _: " + ".join(xs),
    "Mul": lambda args, xs, _: " * ".join(xs),
    "MatMul": lambda args, xs, _: f"{xs[0]} @ {xs[1]}",
    "Concat": lambda args, xs, _: f"torch.cat([{', '.join(xs)}], dim={args['dim']!r})",
    "Select": lambda args, xs, _: f"{xs[0]}[{args['index']!r}]",
    "Chunk": lambda args, xs, _: f"{xs[0]}.chunk({args['chunks']!r}, dim={args['dim']!r})",
    "Expand": _expand,
    "Arange": lambda args, xs, _: (
        f"torch.arange({_size(xs[0], args['dim'])}, device={xs[0]}.device)"
    ),
    "CausalMask": _causal_mask,
    "ScaledDotProductAttention": _attention,
}
"""The ops a generated ``forward`` writes inline, as a hand-written one has them (the
module holds no module for them); each computes what its module here computes."""


def _present(
    c: Optional[Tensor],  # noqa: UP045 - TorchScript reads these annotations
    d: Optional[Tensor],  # noqa: UP045
    e: Optional[Tensor],  # noqa: UP045
    f: Optional[Tensor],  # noqa: UP045
    g: Optional[Tensor],  # noqa: UP045
    h: Optional[Tensor],  # noqa: UP045
) -> list[Tensor]:
    out: list[Tensor] = []
    for t in [c, d, e, f, g, h]:
        if t is not None:
            out.append(t)
    return out


class Add(nn.Module):
    """Sum of the inputs: ``a + b (+ c ...)``."""

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        c: Optional[Tensor] = None,  # noqa: UP045
        d: Optional[Tensor] = None,  # noqa: UP045
        e: Optional[Tensor] = None,  # noqa: UP045
        f: Optional[Tensor] = None,  # noqa: UP045
        g: Optional[Tensor] = None,  # noqa: UP045
        h: Optional[Tensor] = None,  # noqa: UP045
    ) -> Tensor:
        out = a + b
        for t in _present(c, d, e, f, g, h):
            out = out + t
        return out


class Mul(nn.Module):
    """Elementwise product of the inputs."""

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        c: Optional[Tensor] = None,  # noqa: UP045
        d: Optional[Tensor] = None,  # noqa: UP045
        e: Optional[Tensor] = None,  # noqa: UP045
        f: Optional[Tensor] = None,  # noqa: UP045
        g: Optional[Tensor] = None,  # noqa: UP045
        h: Optional[Tensor] = None,  # noqa: UP045
    ) -> Tensor:
        out = a * b
        for t in _present(c, d, e, f, g, h):
            out = out * t
        return out


class Concat(nn.Module):
    """``torch.cat(inputs, dim)``; ``dim`` counts the batch dimension as 0."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        c: Optional[Tensor] = None,  # noqa: UP045
        d: Optional[Tensor] = None,  # noqa: UP045
        e: Optional[Tensor] = None,  # noqa: UP045
        f: Optional[Tensor] = None,  # noqa: UP045
        g: Optional[Tensor] = None,  # noqa: UP045
        h: Optional[Tensor] = None,  # noqa: UP045
    ) -> Tensor:
        xs = [a, b]
        xs.extend(_present(c, d, e, f, g, h))
        return torch.cat(xs, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Reshape(nn.Module):
    """``x.reshape(x.shape[0], *shape)``: the shape of one sample; the batch is kept."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = list(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape([x.shape[0]] + self.shape)  # noqa: RUF005 - TorchScript has no [*xs]

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Permute(nn.Module):
    """``x.permute(dims)``, batch included (it stays first)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Transpose(nn.Module):
    """``x.transpose(dim0, dim1)``."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0 = dim0
        self.dim1 = dim1

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(self.dim0, self.dim1)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"


class Scale(nn.Module):
    """``x * factor``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Mean(nn.Module):
    """``x.mean(dim, keepdim)``; ``dim=None`` averages every dimension but the batch."""

    def __init__(self, dim: int | list[int] | None = None, keepdim: bool = False) -> None:
        super().__init__()
        self.dims: list[int] = [] if dim is None else ([dim] if isinstance(dim, int) else list(dim))
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        dims = self.dims if self.dims else list(range(1, x.dim()))
        return x.mean(dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dims or None}, keepdim={self.keepdim}"


class Select(nn.Module):
    """Picks element ``index`` of a tuple output: an LSTM's ``output`` of ``(output, (h, c))``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Any) -> Any:
        return x[self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class Index(nn.Module):
    """``x.select(dim, index)``: one position along a dimension, which is removed."""

    def __init__(self, dim: int, index: int) -> None:
        super().__init__()
        self.dim = dim
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class Narrow(nn.Module):
    """``x.narrow(dim, start, length)``: ``length`` positions from ``start`` along ``dim``."""

    def __init__(self, dim: int, start: int, length: int) -> None:
        super().__init__()
        self.dim = dim
        self.start = start
        self.length = length

    def forward(self, x: Tensor) -> Tensor:
        return x.narrow(self.dim, self.start, self.length)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, length={self.length}"


class MultiheadAttention(nn.MultiheadAttention):
    """torch's ``nn.MultiheadAttention`` (same arguments, same ``state_dict``), callable with
    one input (self-attention: key = value = query) or two (key = value), so it fits in a
    ``Sequential`` and in graph nodes with ``input: x`` or ``input: [q, kv]``."""

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,  # noqa: UP045
        value: Optional[Tensor] = None,  # noqa: UP045
        key_padding_mask: Optional[Tensor] = None,  # noqa: UP045
        need_weights: bool = True,
        attn_mask: Optional[Tensor] = None,  # noqa: UP045
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:  # noqa: UP045
        k = query if key is None else key
        v = k if value is None else value
        return super().forward(
            query, k, v, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
        )


class MatMul(nn.Module):
    """``a @ b`` (torch.matmul)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class Expand(nn.Module):
    """``x.expand(like.shape[0], -1, ...)``: a tensor whose first dimension is 1 as a batch of
    ``like``'s size."""

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        return x.expand([like.shape[0]] + [-1] * (x.dim() - 1))


class Arange(nn.Module):
    """``torch.arange(x.shape[dim])``: the positions along ``dim``, int64, on ``x``'s device."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.arange(x.shape[self.dim], device=x.device)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class CausalMask(nn.Module):
    """The ``[T, T]`` mask hiding later positions (``T = x.shape[dim]``): true above the
    diagonal, or, for a float dtype, ``-inf`` there and 0 elsewhere (as
    ``nn.Transformer.generate_square_subsequent_mask``)."""

    def __init__(self, dim: int = 1, dtype: str = "bool") -> None:
        super().__init__()
        self.dim = dim
        self.dtype = getattr(torch, dtype)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[self.dim]
        if self.dtype == torch.bool:
            return torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        return torch.full((n, n), float("-inf"), dtype=self.dtype, device=x.device).triu(1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, dtype={self.dtype}"


class ScaledDotProductAttention(nn.Module):
    """``F.scaled_dot_product_attention(query, key, value, mask)``, its dropout in training
    only (as hand-written attention modules pass ``dropout_p``)."""

    def __init__(
        self,
        is_causal: bool = False,
        scale: Optional[float] = None,  # noqa: UP045 - TorchScript reads these annotations
        dropout_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.is_causal = is_causal
        self.scale = scale
        self.dropout_p = dropout_p

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Optional[Tensor] = None,  # noqa: UP045
    ) -> Tensor:
        return F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            is_causal=self.is_causal,
            scale=self.scale,
        )

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, scale={self.scale}, dropout_p={self.dropout_p}"


class Chunk(nn.Module):
    """``x.chunk(chunks, dim)``: a tuple of pieces (pick one with ``Select``)."""

    def __init__(self, chunks: int, dim: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return x.chunk(self.chunks, dim=self.dim)

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, dim={self.dim}"


class StochasticDepth(nn.Module):
    """torchvision's ``ops.StochasticDepth``: in training, drops the input (zeroes it) with
    probability ``p``, each sample on its own (``mode="row"``) or the whole batch at once
    (``"batch"``), and scales what it keeps by ``1 / (1 - p)``; in eval mode (or with
    ``p == 0``) the identity. Residual branches of ConvNeXt, EfficientNet, Swin..."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        # one draw per sample, or one for the whole batch
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


# -- tensors a graph holds ------------------------------------------------------------------


@dataclass(frozen=True)
class _Init:
    """One ``init``: how a build makes the tensor, and how an export writes that call."""

    make: Callable[[tuple[int, ...], torch.dtype, Mapping[str, Any]], Tensor]
    write: Callable[[tuple[int, ...], str, Mapping[str, Any]], str]


def _dims(shape: tuple[int, ...]) -> str:
    """Sizes as a call's arguments: ``1, 5, 64`` (``()`` for a scalar)."""
    return ", ".join(map(str, shape)) if shape else "()"


def _tuple(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _dtype(dtype: str, default: str = "float32") -> str:
    return "" if dtype == default else f", dtype=torch.{dtype}"


def _number(value: float, dtype: str) -> str:
    if dtype.startswith(("float", "bfloat")):
        value = float(value)
        return repr(value) if math.isfinite(value) else f'float("{value}")'
    return repr(int(value))


def _moments(args: Mapping[str, Any]) -> tuple[float, float]:
    mean, std = args.get("mean"), args.get("std")
    return (0.0 if mean is None else float(mean)), (1.0 if std is None else float(std))


def _moment_args(args: Mapping[str, Any]) -> str:
    mean, std = _moments(args)
    items = ([f"mean={mean!r}"] if mean != 0.0 else []) + ([f"std={std!r}"] if std != 1.0 else [])
    return ", ".join(items)


def _arange(shape: tuple[int, ...], dtype: str) -> str:
    text = f"torch.arange({math.prod(shape)}{_dtype(dtype, 'int64')})"
    return text if len(shape) == 1 else f"{text}.reshape({_dims(shape)})"


_INITS: dict[str, _Init] = {
    "zeros": _Init(
        lambda shape, dtype, args: torch.zeros(shape, dtype=dtype),
        lambda shape, dtype, args: f"torch.zeros({_dims(shape)}{_dtype(dtype)})",
    ),
    "ones": _Init(
        lambda shape, dtype, args: torch.ones(shape, dtype=dtype),
        lambda shape, dtype, args: f"torch.ones({_dims(shape)}{_dtype(dtype)})",
    ),
    "constant": _Init(
        lambda shape, dtype, args: torch.full(shape, args["value"], dtype=dtype),
        lambda shape, dtype, args: (
            f"torch.full({_tuple(shape)}, {_number(args['value'], dtype)}{_dtype(dtype)})"
        ),
    ),
    "normal": _Init(
        lambda shape, dtype, args: torch.empty(shape, dtype=dtype).normal_(*_moments(args)),
        lambda shape, dtype, args: (
            f"torch.empty({_dims(shape)}{_dtype(dtype)}).normal_({_moment_args(args)})"
        ),
    ),
    "trunc_normal": _Init(
        lambda shape, dtype, args: nn.init.trunc_normal_(
            torch.empty(shape, dtype=dtype), *_moments(args)
        ),
        lambda shape, dtype, args: (
            "nn.init.trunc_normal_("
            + ", ".join(
                filter(None, (f"torch.empty({_dims(shape)}{_dtype(dtype)})", _moment_args(args)))
            )
            + ")"
        ),
    ),
    "arange": _Init(
        lambda shape, dtype, args: torch.arange(math.prod(shape), dtype=dtype).reshape(shape),
        lambda shape, dtype, args: _arange(shape, dtype),
    ),
}
"""Each ``init`` of a Parameter or Buffer. The build and the export make the same calls, so
a seeded build and the exported module's ``__init__`` hold the same values."""


class Held:
    """A tensor a graph's module holds itself, under the node's name (``self.pos_embedding``,
    state_dict key ``pos_embedding``), not a submodule: made here, registered by the graph's
    builder (:meth:`attach`), written out by the export (:meth:`source`)."""

    parameter: ClassVar[bool] = False
    """Registered as an ``nn.Parameter`` (else as a buffer)."""

    def __init__(
        self,
        shape: Sequence[int],
        init: str = "zeros",
        value: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        dtype: str = "float32",
        persistent: bool = True,
    ) -> None:
        args = {"value": value, "mean": mean, "std": std}
        self.tensor = _INITS[init].make(tuple(shape), getattr(torch, dtype), args)
        self.persistent = persistent

    def attach(self, module: nn.Module, name: str) -> None:
        """Register the tensor on ``module`` under ``name``."""
        if self.parameter:
            module.register_parameter(name, nn.Parameter(self.tensor))
        else:
            module.register_buffer(name, self.tensor, persistent=self.persistent)

    @staticmethod
    def source(args: Mapping[str, Any]) -> str:
        """The expression that makes the tensor (``torch.zeros(1, 1, 64)``), from the node's
        arguments with their defaults filled in."""
        shape = tuple(args["shape"])
        return _INITS[args["init"]].write(shape, args["dtype"], args)


class Parameter(Held):
    """A learned tensor: ``nn.Parameter(torch.zeros(1, 1, 64))``."""

    parameter = True

    def __init__(
        self,
        shape: Sequence[int],
        init: str = "zeros",
        value: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(shape, init, value, mean, std, dtype)


class Buffer(Held):
    """A tensor that is not learned: ``self.register_buffer(name, tensor, persistent)``."""

    def __init__(
        self,
        shape: Sequence[int],
        init: str = "zeros",
        value: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        dtype: str = "float32",
        persistent: bool = True,
    ) -> None:
        super().__init__(shape, init, value, mean, std, dtype, persistent)
