"""Shape rules agree with torch: every layer type, built and run on a real batch.

``SAMPLES`` holds, for every registered layer and op, arguments as a spec would
give them and per-sample inputs. Each case runs the rule, builds the real module
from the spec's arguments plus the inferred ones (torch's defaults are left to
torch), runs it on a batch of 2 and compares the shapes and dtypes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from specnet._build.ops import Held
from specnet._front.registry import TypeDef, layers
from specnet._front.rules import all_rules
from specnet._front.rules.base import Out, ShapeMismatch, Value
from specnet._front.rules.base import TensorType as T

RULES = all_rules()
INFERS = {name: rule.infers for name, rule in RULES.items() if rule.infers}


def with_defaults(t: TypeDef, given: dict[str, Any]) -> dict[str, Any]:
    return t.with_defaults(given)


BATCH = 2


@dataclass(frozen=True)
class Ints:
    """An integer (int64) input of this per-sample shape, values in [0, high)."""

    shape: list[int]
    high: int
    dtype: str = "int64"


@dataclass(frozen=True)
class Unbatched:
    """An input without a batch dimension, of this whole shape and dtype."""

    shape: list[int]
    dtype: str = "float32"


@dataclass(frozen=True)
class Unpool:
    """Two inputs for MaxUnpoolNd: a real MaxPoolNd's output of this shape and its indices."""

    shape: list[int]
    kernel: int


@dataclass(frozen=True)
class Node:
    """A nested layer given as an argument (TransformerEncoder.encoder_layer ...)."""

    type: str
    args: dict[str, Any] = field(default_factory=dict)


Case = tuple[dict[str, Any], list[Any]]


def c(*inputs: Any, **args: Any) -> Case:
    """A case: spec arguments, and inputs: a list of ints is a float32 input of that
    per-sample shape, a tuple a tuple value; or :class:`Ints` / :class:`Unpool`."""
    return args, list(inputs)


X = [3, 4]
B1 = {"batch_first": True}
ATTN = {"batch_first": True, "nhead": 2, "dim_feedforward": 8}
ENC = Node("TransformerEncoderLayer", dict(ATTN))
DEC = Node("TransformerDecoderLayer", dict(ATTN))
LSTM_OUT = ([3, 4], ([1, 4], [1, 4]))
ELEMENTWISE = (
    *("AlphaDropout", "CELU", "Dropout", "ELU", "FeatureAlphaDropout", "GELU", "Hardshrink"),
    *("Hardsigmoid", "Hardswish", "Hardtanh", "Identity", "LeakyReLU", "LogSigmoid", "Mish"),
    *("RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softplus", "Softshrink"),
    *("Softsign", "Tanh", "Tanhshrink"),
)

SAMPLES: dict[str, list[Case]] = {
    # elementwise
    **{name: [c(X), c([5])] for name in ELEMENTWISE},
    "Threshold": [c(X, threshold=0.1, value=0.0)],
    "Scale": [c(X, factor=0.5)],
    "PReLU": [c(X), c([3, 4, 4], num_parameters=3)],
    "Dropout1d": [c([3, 5])],
    "Dropout2d": [c([3, 4, 4])],
    "Dropout3d": [c([2, 3, 3, 3])],
    "Softmax2d": [c([3, 4, 4])],
    "Softmax": [c(X, dim=1), c([2, 3, 4], dim=-1), c(X, dim=0)],
    "LogSoftmax": [c(X, dim=2)],
    "Softmin": [c(X, dim=-2)],
    "GLU": [c(X), c([4, 3], dim=1)],
    "ChannelShuffle": [c([4, 3, 3], groups=2), c([4, 3], groups=2)],
    # linear
    "Linear": [c([5], out_features=3), c([2, 5], in_features=5, out_features=3)],
    "Bilinear": [c([4], [5], out_features=3), c([3, 4], [3, 5], out_features=2)],
    # convolution
    "Conv1d": [
        c([2, 10], out_channels=4, kernel_size=3),
        c([2, 11], out_channels=4, kernel_size=3, stride=2, padding=1, dilation=2),
        c([3, 7], out_channels=2, kernel_size=4, padding="same", padding_mode="reflect"),
    ],
    "Conv2d": [
        c([1, 8, 8], out_channels=4, kernel_size=3),
        c([3, 7, 6], out_channels=6, kernel_size=[3, 2], stride=[2, 1], padding=[1, 0], groups=3),
        c([1, 6, 7], out_channels=2, kernel_size=3, padding="valid", dilation=2),
        c(
            [1, 4, 4],
            in_channels=1,
            out_channels=2,
            kernel_size=3,
            padding=1,
            padding_mode="circular",
        ),
    ],
    "Conv3d": [c([1, 4, 5, 6], out_channels=2, kernel_size=2, stride=2)],
    "ConvTranspose1d": [c([2, 5], out_channels=3, kernel_size=3, stride=2, output_padding=1)],
    "ConvTranspose2d": [
        c(
            [2, 4, 5],
            out_channels=4,
            kernel_size=[3, 2],
            stride=2,
            padding=1,
            dilation=[1, 2],
            groups=2,
        ),
        c([3, 4, 4], out_channels=2, kernel_size=4, stride=2, padding=1),
    ],
    "ConvTranspose3d": [c([1, 2, 3, 2], out_channels=2, kernel_size=2, stride=2)],
    # pooling
    "MaxPool1d": [
        c([3, 9], kernel_size=2),
        c([2, 8], kernel_size=3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        c([7], kernel_size=2, dilation=2),
    ],
    "MaxPool2d": [
        c([3, 8, 7], kernel_size=2),
        c([1, 7, 6], kernel_size=[3, 2], stride=[2, 1], padding=[1, 0], ceil_mode=True),
        c([5, 5], kernel_size=2, return_indices=True),
    ],
    "MaxPool3d": [c([1, 3, 4, 5], kernel_size=2, stride=1)],
    "AvgPool1d": [c([2, 8], kernel_size=3, stride=2, padding=1, ceil_mode=True)],
    "AvgPool2d": [
        c([3, 5, 5], kernel_size=2),
        c([2, 6, 7], kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ],
    "AvgPool3d": [c([2, 2, 4, 4], kernel_size=[1, 2, 2])],
    "LPPool1d": [c([2, 9], norm_type=2.0, kernel_size=3, stride=2)],
    "LPPool2d": [c([2, 5, 5], norm_type=1.0, kernel_size=2, ceil_mode=True)],
    "LPPool3d": [c([1, 4, 4, 4], norm_type=2.0, kernel_size=2)],
    "FractionalMaxPool2d": [
        c([2, 6, 6], kernel_size=2, output_size=3),
        c([2, 7, 8], kernel_size=2, output_ratio=0.5, return_indices=True),
    ],
    "FractionalMaxPool3d": [c([1, 4, 5, 4], kernel_size=2, output_size=[2, 3, 2])],
    "AdaptiveAvgPool1d": [c([2, 7], output_size=3)],
    "AdaptiveAvgPool2d": [c([3, 5, 5], output_size=1), c([3, 5, 4], output_size=[2, None])],
    "AdaptiveAvgPool3d": [c([2, 3, 4, 5], output_size=[1, 2, 3])],
    "AdaptiveMaxPool1d": [c([2, 6], output_size=2, return_indices=True)],
    "AdaptiveMaxPool2d": [c([1, 6, 6], output_size=[3, 2])],
    "AdaptiveMaxPool3d": [c([1, 4, 4, 4], output_size=2)],
    "MaxUnpool1d": [c(Unpool([2, 3], 2), kernel_size=2)],
    "MaxUnpool2d": [c(Unpool([2, 3, 3], 2), kernel_size=2, stride=2)],
    "MaxUnpool3d": [c(Unpool([1, 2, 2, 2], 2), kernel_size=2)],
    # normalization
    "BatchNorm1d": [c([4]), c([4, 6], num_features=4)],
    "BatchNorm2d": [c([3, 4, 4])],
    "BatchNorm3d": [c([2, 2, 3, 3])],
    "SyncBatchNorm": [c([3, 4, 4]), c([3])],
    "InstanceNorm1d": [c([3, 5]), c([3, 5], affine=True)],
    "InstanceNorm2d": [c([3, 4, 4])],
    "InstanceNorm3d": [c([2, 3, 3, 3])],
    "GroupNorm": [c([4, 5], num_groups=2), c([6, 2, 2], num_groups=3)],
    "LayerNorm": [c([5, 6]), c([3, 5, 6], normalized_shape=[5, 6]), c([6], normalized_shape=6)],
    "RMSNorm": [c([4, 6])],
    "LocalResponseNorm": [c([4, 3], size=2), c([4, 3, 3], size=3)],
    "CrossMapLRN2d": [c([4, 3, 3], size=3)],
    # padding
    "ConstantPad1d": [c([3, 4], padding=2, value=1.0), c([4], padding=[1, -1], value=0.0)],
    "ConstantPad2d": [c([2, 3, 3], padding=[1, 2, 0, 3], value=0.0)],
    "ConstantPad3d": [c([1, 2, 2, 2], padding=1, value=0.0)],
    "ZeroPad1d": [c([3, 4], padding=[0, 2])],
    "ZeroPad2d": [c([2, 3, 3], padding=1), c([3, 3], padding=[1, 0, 0, 1])],
    "ZeroPad3d": [c([1, 2, 2, 2], padding=[1, 0, 0, 1, 2, 0])],
    "ReflectionPad1d": [c([2, 3], padding=[2, 1])],
    "ReflectionPad2d": [c([2, 3, 3], padding=1)],
    "ReflectionPad3d": [c([1, 2, 2, 2], padding=1)],
    "ReplicationPad1d": [c([2, 2], padding=3)],
    "ReplicationPad2d": [c([2, 3, 3], padding=[1, 0, 2, 1])],
    "ReplicationPad3d": [c([1, 2, 2, 2], padding=1)],
    "CircularPad1d": [c([2, 3], padding=[2, 1])],
    "CircularPad2d": [c([1, 3, 3], padding=1)],
    "CircularPad3d": [c([1, 2, 2, 2], padding=1)],
    # resampling
    "Upsample": [
        c([3, 4, 4], scale_factor=2),
        c([2, 3, 3], size=[5, 7], mode="bilinear", align_corners=True),
        c([2, 5], scale_factor=1.5, mode="linear"),
        c([1, 2, 3, 3], scale_factor=[2.0, 1.5, 1.0], mode="trilinear"),
        c([2, 5, 5], size=3, mode="area"),
        c([1, 5, 6], scale_factor=1.7, mode="nearest-exact", recompute_scale_factor=True),
    ],
    "UpsamplingBilinear2d": [c([2, 3, 3], scale_factor=2)],
    "UpsamplingNearest2d": [c([2, 2, 3], size=[4, 5])],
    "PixelShuffle": [c([8, 3, 3], upscale_factor=2)],
    "PixelUnshuffle": [c([2, 4, 6], downscale_factor=2)],
    "Fold": [
        c([12, 12], output_size=[4, 5], kernel_size=2),
        c([18, 9], output_size=6, kernel_size=3, stride=2, padding=1),
    ],
    "Unfold": [c([3, 4, 5], kernel_size=2), c([2, 6, 6], kernel_size=3, stride=2, padding=1)],
    # reshaping
    "Flatten": [
        c([2, 3, 4]),
        c([2, 3, 4], start_dim=2),
        c([2, 3, 4], start_dim=1, end_dim=2),
        c([2, 3, 4], start_dim=-2),
    ],
    "Unflatten": [
        c([6, 4], dim=1, unflattened_size=[2, 3]),
        c([3, 8], dim=-1, unflattened_size=[-1, 2]),
    ],
    "Reshape": [c([12], shape=[3, 4]), c([2, 3, 2], shape=[-1, 2])],
    "Permute": [c(X, dims=[0, 2, 1]), c([2, 3, 4], dims=[0, -1, 1, 2])],
    "Transpose": [c(X, dim0=1, dim1=2), c([2, 3, 4], dim0=-1, dim1=1)],
    "Index": [c([5, 4], dim=1, index=-1), c([5, 4], dim=2, index=0)],
    "Narrow": [c([6, 4], dim=1, start=2, length=3), c([6, 4], dim=2, start=-3, length=3)],
    "Select": [c(LSTM_OUT, index=0), c(LSTM_OUT, index=-1)],
    "Chunk": [c([6, 4], chunks=3, dim=1), c([2, 7], chunks=3, dim=-1), c([5, 2], chunks=4, dim=1)],
    # combining
    "Add": [
        c([4, 8], [4, 8]),
        c([4, 1], [1, 8], [4, 8]),
        c([5, 8], Unbatched([1, 5, 8])),
        c(Unbatched([8]), [3, 8]),
        c(Unbatched([2, 1]), Unbatched([3])),
    ],
    "Mul": [c([3, 1, 5], [3, 4, 1]), c(Unbatched([3, 1, 1]), [3, 4, 4])],
    "MatMul": [
        c([3, 4], Unbatched([4, 5])),
        c([2, 3, 4], [2, 4, 6]),
        c([4], Unbatched([4, 2])),
        c(Unbatched([5, 3]), [3, 2]),
        c(Unbatched([2, 3]), Unbatched([3, 4])),
    ],
    "Concat": [c([2, 5], [3, 5]), c([2, 5], [2, 1], [2, 2], dim=-1)],
    "Mean": [c(X), c(X, dim=1, keepdim=True), c([3, 4, 5], dim=[1, -1])],
    "CosineSimilarity": [c([4, 3], [4, 3]), c([2, 5], [1, 5], dim=-1)],
    "PairwiseDistance": [c([5], [5]), c([3, 5], [1, 5], keepdim=True)],
    # tensors without a batch dimension
    "Parameter": [
        c(shape=[1, 1, 4]),
        c(shape=[3, 5], init="normal", std=0.02),
        c(shape=[2], init="trunc_normal", mean=1.0, std=0.5, dtype="float64"),
        c(shape=[4, 1, 1], init="constant", value=1e-6),
        c(shape=[], init="ones"),
    ],
    "Buffer": [
        c(shape=[1, 6], init="arange", dtype="int64", persistent=False),
        c(shape=[2, 2], init="constant", value=3, dtype="int8"),
        c(shape=[3]),
    ],
    "Expand": [c(Unbatched([1, 1, 4]), [5, 4]), c(Unbatched([1, 3]), [2, 2])],
    "Arange": [c([5, 4]), c([3, 5, 2], dim=-2)],
    "CausalMask": [c([5, 4]), c([3, 6], dim=2, dtype="float32")],
    "StochasticDepth": [c(X, p=0.2, mode="row"), c([2, 3, 3], p=0.5, mode="batch")],
    # embeddings
    "Embedding": [
        c(Ints([5], 10), num_embeddings=10, embedding_dim=4),
        c(Unbatched([6], "int64"), num_embeddings=10, embedding_dim=3),
        c(Ints([2, 3], 7), num_embeddings=7, embedding_dim=3, padding_idx=0),
        c(Ints([], 7), num_embeddings=7, embedding_dim=3),
    ],
    "EmbeddingBag": [
        c(Ints([6], 10), num_embeddings=10, embedding_dim=4),
        c(Ints([2], 10), num_embeddings=10, embedding_dim=3, mode="max"),
    ],
    # recurrent
    "RNN": [
        c([5, 3], hidden_size=4, **B1),
        c([5, 3], hidden_size=4, num_layers=2, bidirectional=True, nonlinearity="relu", **B1),
    ],
    "GRU": [c([5, 3], hidden_size=4, num_layers=2, **B1)],
    "LSTM": [
        c([5, 3], hidden_size=4, **B1),
        c([4, 3], hidden_size=6, proj_size=2, num_layers=2, bidirectional=True, **B1),
    ],
    "RNNCell": [c([3], hidden_size=4)],
    "GRUCell": [c([3], hidden_size=4)],
    "LSTMCell": [c([3], hidden_size=4, input_size=3)],
    # attention
    "MultiheadAttention": [
        c([5, 4], num_heads=2, **B1),
        c(
            [5, 4],
            [7, 3],
            [7, 6],
            num_heads=2,
            kdim=3,
            vdim=6,
            add_bias_kv=True,
            add_zero_attn=True,
            **B1,
        ),
        c([5, 4], [6, 3], num_heads=1, kdim=3, vdim=3, **B1),
    ],
    "ScaledDotProductAttention": [
        c([2, 5, 4], [2, 7, 4], [2, 7, 3]),
        c([5, 4], [5, 4], [5, 4], is_causal=True, scale=0.5),
        c([2, 3, 4], [2, 6, 4], [2, 6, 4], Unbatched([3, 6], "bool")),
        c([2, 3, 4], [2, 3, 4], [2, 3, 4], Unbatched([1, 3, 3])),
        c([2, 3, 4], [2, 5, 4], [2, 5, 4], Ints([1, 1, 5], 2, "bool"), dropout_p=0.1),
    ],
    "TransformerEncoderLayer": [c([5, 4], **ATTN)],
    "TransformerDecoderLayer": [c([3, 4], [5, 4], **ATTN, norm_first=True)],
    "Transformer": [c([5, 4], [3, 4], **ATTN, num_encoder_layers=1, num_decoder_layers=1)],
    "TransformerEncoder": [
        c([5, 4], encoder_layer=ENC, num_layers=2),
        c([5, 4], encoder_layer=ENC, num_layers=1, norm=Node("LayerNorm")),
    ],
    "TransformerDecoder": [
        c([3, 4], [5, 4], decoder_layer=DEC, num_layers=2, norm=Node("LayerNorm")),
    ],
}

RECURRENT = {"RNN", "GRU", "LSTM"}


# -- making inputs -------------------------------------------------------------


def values(inputs: list[Any]) -> list[Value]:
    """The per-sample values a rule sees."""
    out: list[Value] = []
    for item in inputs:
        if isinstance(item, Unpool):
            out += [T(tuple(item.shape)), T(tuple(item.shape), "int64")]
        else:
            out.append(value(item))
    return out


def value(item: Any) -> Value:
    if isinstance(item, Ints):
        return T(tuple(item.shape), item.dtype)
    if isinstance(item, Unbatched):
        return T(tuple(item.shape), item.dtype, batched=False)
    if isinstance(item, tuple):
        return tuple(value(v) for v in item)
    return T(tuple(item))


def tensors(inputs: list[Any]) -> list[Any]:
    """Real inputs, a batch of BATCH samples."""
    out: list[Any] = []
    for item in inputs:
        if isinstance(item, Unpool):
            c, *size = item.shape
            pool = getattr(nn, f"MaxPool{len(size)}d")(item.kernel, return_indices=True)
            x = torch.randn(BATCH, c, *(s * item.kernel for s in size))
            out += list(pool(x))
        else:
            out.append(tensor(item))
    return out


def tensor(item: Any) -> Any:
    if isinstance(item, Ints):
        ints = torch.randint(0, item.high, (BATCH, *item.shape))
        return ints.to(getattr(torch, item.dtype))
    if isinstance(item, Unbatched):
        if item.dtype in ("int64", "bool"):
            ints = torch.randint(0, 2, item.shape)
            return ints.bool() if item.dtype == "bool" else ints
        return torch.randn(*item.shape, dtype=getattr(torch, item.dtype))
    if isinstance(item, tuple):
        return tuple(tensor(v) for v in item)
    return torch.randn(BATCH, *item)


# -- running rules and modules ---------------------------------------------------


def run_rule(name: str, args: dict[str, Any], vals: list[Value]) -> Out:
    """The rule on the spec's arguments; nested nodes become the Out of their own rules."""
    given = {k: describe(v, vals) if isinstance(v, Node) else v for k, v in args.items()}
    return RULES[name].fn(with_defaults(layers()[name], given), list(vals))


def describe(node: Node, vals: list[Value]) -> Out:
    most = RULES[node.type].inputs[1]
    return run_rule(node.type, node.args, vals[: most or len(vals)])


def constructor(name: str, args: dict[str, Any], out: Out, vals: list[Value]) -> dict[str, Any]:
    """What the compiler passes: the spec's arguments plus the inferred ones."""
    ctor: dict[str, Any] = {
        k: build(v, vals) if isinstance(v, Node) else v for k, v in args.items()
    }
    ctor.update({k: out.args[k] for k in RULES[name].infers})
    if isinstance(ctor.get("scale_factor"), list):
        # torch's Upsample takes a tuple, not a list: the compiler must convert it.
        ctor["scale_factor"] = tuple(ctor["scale_factor"])
    return ctor


def build(node: Node, vals: list[Value]) -> nn.Module:
    out = describe(node, vals)
    module: nn.Module = layers()[node.type].build_target()(
        **constructor(node.type, node.args, out, vals)
    )
    return module


def call(name: str, module: nn.Module, xs: list[Any]) -> Any:
    if name == "MultiheadAttention":
        q, k, v = (xs * 3)[:3] if len(xs) == 1 else (*xs, xs[-1])[:3]
        return module(q, k, v)
    return module(*xs)


def expected(v: Value) -> Any:
    if isinstance(v, T):
        return ((BATCH, *v.shape) if v.batched else v.shape, v.dtype)
    return tuple(expected(e) for e in v)


def actual(r: Any) -> Any:
    if isinstance(r, Tensor):
        return (tuple(r.shape), str(r.dtype).removeprefix("torch."))
    return tuple(actual(e) for e in r)


def batch_first_state(r: Any) -> Any:
    """RNN/LSTM/GRU hidden states carry the batch at dimension 1; move it first."""
    out, state = r
    if isinstance(state, tuple):
        return out, tuple(s.transpose(0, 1) for s in state)
    return out, state.transpose(0, 1)


CASES = [
    pytest.param(name, args, inputs, id=f"{name}-{i}")
    for name, cases in SAMPLES.items()
    for i, (args, inputs) in enumerate(cases)
]


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize(("name", "args", "inputs"), CASES)
def test_rule_matches_torch(name: str, args: dict[str, Any], inputs: list[Any]) -> None:
    torch.manual_seed(0)
    vals = values(inputs)
    out = run_rule(name, args, vals)
    for k in RULES[name].infers:
        assert out.args.get(k) is not None, f"{name} did not infer {k}"
    assert isinstance(out.macs, int) and out.macs >= 0
    ctor = constructor(name, args, out, vals)
    made = layers()[name].build_target()(**ctor)
    if isinstance(made, Held):  # a tensor its graph holds: no forward
        real = made.tensor
    else:
        with torch.no_grad():
            real = call(name, made.eval(), tensors(inputs))
    if name in RECURRENT:
        real = batch_first_state(real)
    assert expected(out.value) == actual(real)


# -- coverage and contract -------------------------------------------------------


def test_every_layer_and_op_has_a_rule_and_a_sample() -> None:
    names = {n for n, t in layers().items() if t.kind in ("layer", "op")}
    assert len(names) >= 126
    assert names - set(RULES) == set(), "layer types without a shape rule"
    assert set(SAMPLES) == names, "SAMPLES must cover exactly the registered layers and ops"


def test_inferred_arguments_are_exactly_these() -> None:
    def each(names: str, *args: str) -> dict[str, tuple[str, ...]]:
        return {n: args for n in names.split()}

    assert dict(INFERS) == {
        "Linear": ("in_features",),
        "Bilinear": ("in1_features", "in2_features"),
        **each(
            "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d", "in_channels"
        ),
        **each(
            "BatchNorm1d BatchNorm2d BatchNorm3d InstanceNorm1d InstanceNorm2d InstanceNorm3d SyncBatchNorm",
            "num_features",
        ),
        "GroupNorm": ("num_channels",),
        "LayerNorm": ("normalized_shape",),
        "RMSNorm": ("normalized_shape",),
        **each("RNN LSTM GRU RNNCell LSTMCell GRUCell", "input_size"),
        "MultiheadAttention": ("embed_dim",),
        **each("TransformerEncoderLayer TransformerDecoderLayer Transformer", "d_model"),
    }


def test_number_of_inputs() -> None:
    inputs = {name: r.inputs for name, r in RULES.items() if r.inputs != (1, 1)}
    assert inputs == {
        **dict.fromkeys(("Add", "Mul", "Concat"), (2, 8)),
        **dict.fromkeys(("Parameter", "Buffer"), (0, 0)),
        **dict.fromkeys(("Expand", "MatMul"), (2, 2)),
        "ScaledDotProductAttention": (3, 4),
        **dict.fromkeys(("Bilinear", "CosineSimilarity", "PairwiseDistance"), (2, 2)),
        **dict.fromkeys(("MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"), (2, 2)),
        **dict.fromkeys(("TransformerDecoderLayer", "TransformerDecoder", "Transformer"), (2, 2)),
        "MultiheadAttention": (1, 3),
    }


def test_rules_do_not_import_torch() -> None:
    code = "import sys, specnet._front.rules; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_with_defaults_fills_torch_defaults_but_not_inferred_or_required() -> None:
    args = with_defaults(layers()["Conv2d"], {"out_channels": 4, "kernel_size": 3})
    assert args["stride"] == 1 and args["padding"] == 0 and args["padding_mode"] == "zeros"
    assert "in_channels" not in args
    transformer = with_defaults(layers()["Transformer"], {})
    assert "d_model" not in transformer and transformer["nhead"] == 8
    assert "kernel_size" not in with_defaults(layers()["MaxPool2d"], {})


def test_macs() -> None:
    assert run_rule("Linear", {"out_features": 3}, [T((5,))]).macs == 15
    conv = run_rule("Conv2d", {"out_channels": 4, "kernel_size": 3, "groups": 2}, [T((2, 8, 8))])
    assert conv.macs == 4 * 6 * 6 * 1 * 9
    lstm = run_rule("LSTM", {"hidden_size": 4, "batch_first": True}, [T((5, 3))])
    assert lstm.macs == 5 * 4 * 4 * (3 + 4)
    enc = run_rule("TransformerEncoderLayer", dict(ATTN), [T((5, 4))])
    stack = run_rule("TransformerEncoder", {"encoder_layer": ENC, "num_layers": 3}, [T((5, 4))])
    assert stack.macs == 3 * enc.macs > 0


# -- mismatches ------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A spec that does not fit its input: the rule's ``arg`` at fault, fragments of
    its message, and whether torch itself rejects it (else only specnet's batch-first
    convention does)."""

    name: str
    args: dict[str, Any]
    inputs: list[Any]
    arg: str | None
    fragments: tuple[str, ...]
    torch_rejects: bool = True


def bad(name: str, inputs: list[Any], arg: str | None, *fragments: str, **args: Any) -> Bad:
    return Bad(name, args, inputs, arg, fragments)


def ours(b: Bad) -> Bad:
    """Wrong for specnet, fine for torch."""
    return Bad(b.name, b.args, b.inputs, b.arg, b.fragments, torch_rejects=False)


FLAT = [[784]]
MISMATCHES: list[Bad] = [
    bad("Linear", FLAT, "in_features", "10", "[784]", in_features=10, out_features=3),
    bad(
        "Conv2d", [[1, 3, 3]], "kernel_size", "5", "3x3", "[1, 3, 3]", out_channels=4, kernel_size=5
    ),
    ours(bad("Conv2d", FLAT, None, "(C, H, W)", "[784]", out_channels=4, kernel_size=3)),
    bad("Conv2d", [[3, 8, 8]], "groups", "[3, 8, 8]", out_channels=4, kernel_size=3, groups=2),
    bad("Conv1d", [[3, 8]], "in_channels", "[3, 8]", in_channels=2, out_channels=4, kernel_size=1),
    bad("Add", [[4, 8], [4, 9]], None, "[4, 8]", "[4, 9]"),
    bad("Add", [[8], [4, 8]], None, "[8]", "[4, 8]"),
    bad("Concat", [[2, 5], [3, 4]], None, "[2, 5]", "[3, 4]"),
    bad("Reshape", [[3, 5, 5]], "shape", "[10, 10]", "[3, 5, 5]", "75", shape=[10, 10]),
    bad("Reshape", [[4]], "shape", "-1", shape=[-1, -1]),
    ours(bad("LSTM", [[5, 3]], "batch_first", "batch_first: true", hidden_size=4)),
    ours(bad("MultiheadAttention", [[5, 4]], "batch_first", "batch_first: true", num_heads=2)),
    ours(bad("TransformerEncoderLayer", [[5, 4]], "batch_first", "batch_first: true", nhead=2)),
    bad("MultiheadAttention", [[5, 4]], "num_heads", "3", "4", num_heads=3, **B1),
    bad("MultiheadAttention", [[5, 4], [6, 3]], "kdim", "[6, 3]", num_heads=2, **B1),
    ours(bad("Permute", [X], "dims", "batch", dims=[1, 0, 2])),
    bad("Permute", [X], "dims", "[0, 1, 1]", "[3, 4]", dims=[0, 1, 1]),
    ours(bad("Index", [[3]], "dim", "batch", dim=0, index=0)),
    bad("Index", [[3]], "index", "3", "[3]", dim=1, index=3),
    bad("Narrow", [[6]], "length", "exceeds", dim=1, start=4, length=3),
    ours(bad("Narrow", [[3]], "dim", "batch", dim=0, start=0, length=1)),
    bad("Narrow", [[6]], "start", "out of range", dim=1, start=7, length=0),
    ours(bad("Select", [[3]], None, "[3]", index=0)),
    bad("Select", [([3], [4])], "index", "([3], [4])", index=2),
    bad("Mean", [X], "dim", "3", "[3, 4]", dim=3),
    bad("Softmax", [X], "dim", "3", "[3, 4]", dim=3),
    ours(bad("Flatten", [X], "start_dim", "batch", start_dim=0)),
    bad("Unflatten", [[6]], "unflattened_size", "[4, 4]", "[6]", dim=1, unflattened_size=[4, 4]),
    bad("LayerNorm", [[3, 5]], "normalized_shape", "[4]", "[3, 5]", normalized_shape=[4]),
    bad("GroupNorm", [[4, 5]], "num_groups", "3", "[4, 5]", num_groups=3),
    ours(bad("BatchNorm2d", [[4, 5]], None, "(C, H, W)", "[4, 5]")),
    bad("MaxPool2d", [[1, 8, 8]], "padding", "2", "3", kernel_size=3, padding=2),
    bad("MaxPool2d", [[1, 2, 2]], "kernel_size", "3", "2x2", "[1, 2, 2]", kernel_size=3),
    bad(
        "ConvTranspose2d",
        [[1, 4, 4]],
        "output_padding",
        "2",
        out_channels=2,
        kernel_size=3,
        output_padding=2,
    ),
    bad("ReflectionPad1d", [[2, 3]], "padding", "3", "[2, 3]", padding=3),
    bad("Fold", [[8, 8]], "output_size", "9", "[8, 8]", output_size=4, kernel_size=2),
    bad("Embedding", [[5]], None, "[5]", num_embeddings=10, embedding_dim=4),
    bad("Upsample", [[1, 3, 3]], "size", "size", "scale_factor", size=4, scale_factor=2.0),
    bad("PixelShuffle", [[6, 3, 3]], "upscale_factor", "[6, 3, 3]", upscale_factor=2),
    bad("Linear", [([5], [5])], None, "([5], [5])", "Select", out_features=3),
    # tensors without a batch dimension
    ours(bad("Add", [[8], Unbatched([1, 1, 8])], None, "in front of the batch")),
    ours(bad("Add", [[5, 8], Unbatched([2, 5, 8])], None, "must be 1, not 2")),
    bad("Add", [[5, 8], Unbatched([4, 8])], None, "[5, 8] and [4, 8] (no batch)"),
    ours(bad("Expand", [Unbatched([2, 4]), [5, 4]], None, "first dimension of 1")),
    ours(bad("Expand", [[1, 4], [5, 4]], None, "has one")),
    bad("MatMul", [[3, 4], Unbatched([5, 2])], None, "4 columns meet 5 rows"),
    ours(bad("MatMul", [Unbatched([5, 3]), [3]], None, "sum over the batch")),
    ours(bad("MatMul", [Unbatched([2, 1, 3, 4]), [4, 5]], None, "move the batch")),
    ours(bad("Parameter", [], "dtype", "floating-point", shape=[3], dtype="int64")),
    ours(bad("Parameter", [], "std", "normal or trunc_normal", shape=[3], std=0.1)),
    ours(bad("Parameter", [], "init", "needs a value", shape=[3], init="constant")),
    bad("Buffer", [], "value", "whole number", shape=[3], init="constant", value=300, dtype="int8"),
    ours(bad("Buffer", [], "dtype", "does not hold", shape=[300], init="arange", dtype="uint8")),
    ours(bad("Chunk", [X], "dim", "batch", chunks=2, dim=0)),
    ours(bad("Arange", [X], "dim", "batch", dim=0)),
    bad("ScaledDotProductAttention", [[2, 5, 4], [2, 7, 3], [2, 7, 3]], None, "3 features"),
    # torch 2.14's CPU kernel does not check it (and reads past the values)
    ours(bad("ScaledDotProductAttention", [[2, 5, 4], [2, 7, 4], [2, 6, 4]], None, "in length")),
    bad(
        "ScaledDotProductAttention",
        [[2, 3, 4], [2, 5, 4], [2, 5, 4], Unbatched([3, 4], "bool")],
        None,
        "does not broadcast",
    ),
    ours(
        bad(
            "ScaledDotProductAttention",
            [[3, 4], [3, 4], [3, 4], Unbatched([3, 3], "bool")],
            "is_causal",
            "not both",
            is_causal=True,
        )
    ),
    # encoder_layer described on another input: the stack's own input must fit it too
    ours(
        bad(
            "TransformerEncoder",
            [[5, 4]],
            "encoder_layer",
            "[5, 4]",
            "8",
            encoder_layer=Out(T((5, 8)), {"d_model": 8}),
            num_layers=1,
        )
    ),
]


@pytest.mark.parametrize("case", MISMATCHES, ids=[f"{b.name}-{b.arg}" for b in MISMATCHES])
def test_mismatch(case: Bad) -> None:
    vals = values(case.inputs)
    given = {k: v for k, v in case.args.items() if not isinstance(v, Node)}
    nested = {k: v for k, v in case.args.items() if isinstance(v, Node)}
    described = {k: describe(v, vals) for k, v in nested.items()}
    with pytest.raises(ShapeMismatch) as info:
        RULES[case.name].fn(with_defaults(layers()[case.name], {**given, **described}), vals)
    assert info.value.arg == case.arg
    for fragment in case.fragments:
        assert fragment in info.value.message, info.value.message
    if case.torch_rejects:
        # The spec, inferred arguments given as the input suggests, fails in torch too.
        with pytest.raises((RuntimeError, ValueError, AssertionError, IndexError, TypeError)):
            ctor = {**given, **{k: build(v, vals) for k, v in nested.items()}}
            for k in RULES[case.name].infers:
                ctor.setdefault(k, _guess(k, vals))
            module = layers()[case.name].build_target()(**ctor).eval()
            with torch.no_grad():
                call(case.name, module, tensors(case.inputs))


def _guess(arg: str, vals: list[Value]) -> Any:
    """An inferred argument as a user who did not leave it out might give it: from the input."""
    x = vals[0]
    assert isinstance(x, T)
    if arg == "normalized_shape":
        return [x.shape[-1]]
    return x.shape[0] if arg in ("in_channels", "num_features", "num_channels") else x.shape[-1]


WEIGHTED = [
    ("Linear", {"out_features": 3}, (4,)),
    ("Conv2d", {"out_channels": 2, "kernel_size": 3}, (1, 5, 5)),
    ("LSTM", {"hidden_size": 3, "batch_first": True}, (5, 4)),
    ("LayerNorm", {"normalized_shape": [4]}, (4,)),
    ("LayerNorm", {"normalized_shape": [4], "elementwise_affine": False}, (4,)),
    ("RMSNorm", {"normalized_shape": [4]}, (4,)),
    ("BatchNorm1d", {}, (4,)),
    ("BatchNorm1d", {"affine": False}, (4,)),
    ("BatchNorm1d", {"affine": False, "track_running_stats": False}, (4,)),
    ("InstanceNorm1d", {"track_running_stats": True}, (2, 5)),
    ("InstanceNorm1d", {"affine": True}, (2, 5)),
    ("GroupNorm", {"num_groups": 2}, (4, 3)),
    ("GroupNorm", {"num_groups": 2, "affine": False}, (4, 3)),
]


@pytest.mark.parametrize(
    ("name", "args", "shape"),
    WEIGHTED,
    ids=[f"{w[0]}-{'-'.join(f'{k}={v}' for k, v in w[1].items())}" for w in WEIGHTED],
)
@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")
def test_inputs_of_another_float_dtype_than_the_weights_are_refused_where_torch_refuses(
    name: str, args: dict[str, Any], shape: tuple[int, ...], dtype: str
) -> None:
    # specnet builds float32 weights; torch's matmuls and convolutions refuse any other
    # floating dtype; its norms take float16 and bfloat16 beside them, and float64 only where
    # they hold no float32 weights or statistics. torch itself is the oracle, in training and
    # in evaluation.
    vals: list[Value] = [T(shape, "float32")]
    out = run_rule(name, args, vals)
    made = layers()[name].build_target()(**constructor(name, args, out, vals))
    x = torch.randn(2, *shape).to(getattr(torch, dtype))
    try:
        made.train()(x)
        with torch.no_grad():
            made.eval()(x)
        torch_takes = True
    except (RuntimeError, ValueError):  # the RNNs check dtypes in Python
        torch_takes = False
    try:
        run_rule(name, args, [T(shape, dtype)])
        rule_takes = True
    except ShapeMismatch as exc:
        assert "float32" in str(exc)
        rule_takes = False
    assert rule_takes is torch_takes
    if name in ("Linear", "Conv2d", "LSTM"):
        assert not torch_takes  # the test would be weaker if torch took them all
