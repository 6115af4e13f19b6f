"""Embeddings."""

from __future__ import annotations

from .base import (
    _INTS,
    Args,
    Out,
    RuleSet,
    ShapeMismatch,
    TensorType,
    Value,
    need_rank,
    prod,
    tensor,
)

rules = RuleSet()


def _indices(v: Value, layer: str) -> TensorType:
    x = tensor(v)
    if x.dtype not in _INTS:
        raise ShapeMismatch(f"{layer} expects integer indices (int64), got {x}")
    return x


def _table(args: Args) -> None:
    """torch's checks: ``padding_idx`` indexes the table (negative counts from the end); and,
    in the backward, gradients are not both sparse and scaled by frequency."""
    i, n = args.get("padding_idx"), args["num_embeddings"]
    if i is not None and not -n <= i < n:
        raise ShapeMismatch(
            f"padding_idx {i} is outside the {n} embeddings (-{n}..{n - 1})", arg="padding_idx"
        )
    if args["sparse"] and args["scale_grad_by_freq"]:
        raise ShapeMismatch(
            "sparse gradients cannot be scaled by frequency (scale_grad_by_freq): torch's "
            "backward refuses the two together",
            arg="scale_grad_by_freq",
        )


@rules.rule("Embedding", unbatched=True)
def embedding(args: Args, inputs: list[Value]) -> Out:
    """Integer indices (any shape, with or without a batch) -> float32 vectors: adds
    ``embedding_dim``."""
    x = _indices(inputs[0], "Embedding")
    _table(args)
    return Out(TensorType((*x.shape, args["embedding_dim"]), "float32", x.batched), args)


@rules.rule("EmbeddingBag")
def embedding_bag(args: Args, inputs: list[Value]) -> Out:
    """One bag of indices per sample, (bag,) -> (embedding_dim,).

    Bags of varying length (a flat index tensor with ``offsets``) and
    ``per_sample_weights`` need a second input and are not described: one
    sample's bag cannot be told from its shape.
    """
    x = _indices(inputs[0], "EmbeddingBag")
    _table(args)
    if args["mode"] == "max":  # torch's forward refuses these
        for arg, what in (
            ("scale_grad_by_freq", "scaling gradients by frequency"),
            ("sparse", "sparse gradients"),
        ):
            if args[arg]:
                raise ShapeMismatch(f"mode 'max' does not support {what} ({arg})", arg=arg)
    need_rank(x, (1,), "EmbeddingBag", "bag")
    return Out(
        TensorType((args["embedding_dim"],), "float32"), args, prod(x.shape) * args["embedding_dim"]
    )
