"""specnet's own operations: the inline tensor code of hand-written ``forward``s, as modules.

Each is parameter-free, traceable (``torch.compile``, ``torch.fx``) and, except
``Select``, scriptable (``torch.jit.script``). Operations with several inputs take
them as separate arguments, in the order the spec lists them; TorchScript has no
``*args``, so they take up to eight (``rules.base.MAX_INPUTS``) as optional arguments.

A built graph writes the multi-input ones inline instead (:data:`INLINE`), as a
hand-written ``forward`` has them, computing what their modules here compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "INLINE",
    "Add",
    "Concat",
    "Index",
    "Mean",
    "Mul",
    "MultiheadAttention",
    "Permute",
    "Reshape",
    "Scale",
    "Select",
    "Transpose",
]


INLINE: dict[str, Callable[[Mapping[str, Any], Sequence[str]], str]] = {
    "Add": lambda args, xs: " + ".join(xs),
    "Mul": lambda args, xs: " * ".join(xs),
    "Concat": lambda args, xs: f"torch.cat([{', '.join(xs)}], dim={args['dim']!r})",
}
"""The expression each multi-input op is in generated code: ``(arguments, input
expressions) -> expression``, the arguments with their defaults filled in."""


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
