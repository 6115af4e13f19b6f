"""Learned tensors, positions, masks, training-only outputs and unused-node warnings.

Each construct is built from a spec and compared with the module a person would write with
torch alone: the same state_dict keys and shapes, the same outputs given the same weights,
and the same code where the generated ``forward`` is the point. Errors are located
SpecErrors; the exported Python runs and matches the build.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_shape_rules import SAMPLES, Ints, Unbatched, tensors
from torch import Tensor, nn

import specnet
from specnet._build.export import python_source
from specnet._build.ops import INLINE, StochasticDepth
from specnet._front.registry import layers

VIT = """\
input: [3, 32, 32]
model:
  type: Graph
  nodes:
    conv_proj: {type: Conv2d, out_channels: 64, kernel_size: 16, stride: 16}
    flat: {type: Flatten, start_dim: 2}
    seq: {type: Permute, dims: [0, 2, 1]}
    class_token: {type: Parameter, shape: [1, 1, 64]}
    token: {type: Expand, input: [class_token, seq]}
    cat: {type: Concat, dim: 1, input: [token, seq]}
    pos_embedding: {type: Parameter, shape: [1, 5, 64], init: normal, std: 0.02}
    add: {type: Add, input: [cat, pos_embedding]}
"""


class PatchEmbedding(nn.Module):
    """torchvision's VisionTransformer up to its encoder's position embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, 64, kernel_size=16, stride=16)
        self.class_token = nn.Parameter(torch.zeros(1, 1, 64))
        self.pos_embedding = nn.Parameter(torch.empty(1, 5, 64).normal_(std=0.02))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_proj(x).flatten(2).permute(0, 2, 1)
        token = self.class_token.expand(x.shape[0], -1, -1)
        return torch.cat([token, x], dim=1) + self.pos_embedding


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def exported(spec: Any) -> nn.Module:
    namespace: dict[str, Any] = {}
    exec(compile(python_source(specnet.load(spec)), "<exported>", "exec"), namespace)
    model: nn.Module = namespace["Model"]()
    return model


def test_vit_embedding_is_the_hand_written_module() -> None:
    built, hand = specnet.build(VIT), PatchEmbedding()
    assert shapes(built) == shapes(hand)
    assert list(built.state_dict())[:2] == ["class_token", "pos_embedding"]  # held, not children
    assert isinstance(built.class_token, nn.Parameter)
    built.load_state_dict(hand.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(built(x), hand(x))
    assert "self.class_token.expand(seq.shape[0], -1, -1)" in built.code
    assert "x + self.pos_embedding" in built.code


def test_vit_embedding_exports_and_traces() -> None:
    built = specnet.build(VIT).eval()
    copy = exported(VIT)
    source = python_source(specnet.load(VIT))
    assert "        self.class_token = nn.Parameter(torch.zeros(1, 1, 64))" in source
    assert "nn.Parameter(torch.empty(1, 5, 64).normal_(std=0.02))" in source
    copy.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(copy(x), built(x))
    torch.testing.assert_close(torch.fx.symbolic_trace(built)(x), built(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.testing.assert_close(torch.jit.script(built)(x), built(x))


def graph(nodes: str, inputs: str = "input: [4]", extra: str = "") -> str:
    return f"{inputs}\nmodel:\n  type: Graph\n{extra}  nodes:\n{nodes}"


INITS = [
    "{type: Parameter, shape: [2, 3]}",
    "{type: Parameter, shape: [4], init: ones}",
    "{type: Parameter, shape: [2, 2], init: constant, value: 0.5}",
    "{type: Parameter, shape: [3, 4], init: normal, mean: 1.0, std: 0.1}",
    "{type: Parameter, shape: [50], init: trunc_normal, std: 2.0}",
    "{type: Buffer, shape: [2, 3], init: arange, dtype: int64}",
    "{type: Buffer, shape: [3], init: constant, value: -7, dtype: int8, persistent: false}",
    "{type: Parameter, shape: [], init: constant, value: .inf, dtype: float64}",
]


@pytest.mark.parametrize("node", INITS)
def test_each_init_builds_and_exports_the_same_tensor(node: str) -> None:
    spec = graph(
        f"    t: {node}\n    out: {{type: Add, input: [input, input]}}\n  output: [out, t]\n"
    )
    torch.manual_seed(0)
    built = specnet.build(spec)
    torch.manual_seed(0)
    copy = exported(spec)
    assert isinstance(built.t, nn.Parameter) == ("Parameter" in node)
    assert type(copy.t) is type(built.t)
    torch.testing.assert_close(copy.t, built.t, rtol=0, atol=0)
    assert set(copy.state_dict()) == set(built.state_dict())


def test_init_values() -> None:
    torch.manual_seed(0)
    model = specnet.build(
        graph(
            "    a: {type: Buffer, shape: [2, 3], init: arange, dtype: int64}\n"
            "    b: {type: Parameter, shape: [4], init: constant, value: 0.25}\n"
            "    c: {type: Parameter, shape: [2000], init: trunc_normal, std: 2.0}\n"
            "    d: {type: Buffer, shape: [2], persistent: false, dtype: bool, init: ones}\n"
            "    out: {type: Add, input: [input, b]}\n"
            "  output: [out, a, c, d]\n"
        )
    )
    assert model.a.tolist() == [[0, 1, 2], [3, 4, 5]] and model.a.dtype == torch.int64
    assert model.b.tolist() == [0.25] * 4
    assert model.c.min() >= -2.0 and model.c.max() <= 2.0 and model.c.std() > 1.0
    assert set(model.state_dict()) == {"a", "b", "c"}  # d is not persistent
    assert not model.a.requires_grad and model.b.requires_grad


def test_a_meta_build_allocates_no_tensor_and_takes_a_checkpoint() -> None:
    meta = specnet.build(VIT, device="meta")
    assert meta.pos_embedding.device.type == "meta"
    hand = PatchEmbedding()
    meta.load_state_dict(hand.state_dict(), assign=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(meta(x), hand(x))


def test_summary_counts_held_parameters() -> None:
    summary = specnet.summary(VIT)
    rows = {r.name: r for r in summary.rows}
    assert (rows["class_token"].params, rows["pos_embedding"].params) == (64, 320)
    assert rows["class_token"].output == "[1, 1, 64] (no batch)"
    assert rows["token"].output == "[1, 64]"
    assert summary.total_params == sum(p.numel() for p in PatchEmbedding().parameters())


def errors(text: str) -> list[specnet.ErrorItem]:
    with pytest.raises(specnet.SpecError) as info:
        specnet.build(text)
    assert all(e.line is not None for e in info.value.errors)
    return info.value.errors


@pytest.mark.parametrize(
    ("nodes", "where", "fragment"),
    [
        (
            "    p: {type: Parameter, shape: [1, 4]}\n    c: {type: Conv1d, out_channels: 2, kernel_size: 1}\n",
            ("model", "nodes", "c"),
            "Conv1d needs its input with the batch dimension, but [1, 4] (no batch) has none",
        ),
        (
            "    p: {type: Parameter, shape: [3, 4]}\n    s: {type: Add, input: [input, p]}\n",
            ("model", "nodes", "s"),
            "the first dimension of [3, 4] (no batch) meets the batch of [4] and must be 1",
        ),
        (
            "    p: {type: Parameter, shape: [4], input: input}\n",
            ("model", "nodes", "p", "input"),
            "Parameter takes no input",
        ),
        (
            "    p: {type: Parameter, shape: [4], dtype: int64}\n",
            ("model", "nodes", "p", "dtype"),
            "floating-point",
        ),
        (
            "    p: {type: Parameter, shape: [4], init: zeros, std: 0.1}\n",
            ("model", "nodes", "p", "std"),
            "std is read by init normal or trunc_normal only",
        ),
        (
            "    e: {type: Expand, input: [input, input]}\n",
            ("model", "nodes", "e"),
            "Expand gives a tensor the batch, but its first input [4] has one",
        ),
    ],
)
def test_tensors_without_a_batch_are_checked(
    nodes: str, where: tuple[str, ...], fragment: str
) -> None:
    (error,) = errors(graph(nodes))
    assert error.path == where, error
    assert fragment in error.msg, error.msg


def test_a_parameter_outside_a_graph_is_refused() -> None:
    (error,) = errors(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    - {type: Parameter, shape: [4]}\n"
    )
    assert error.line == 5 and "takes no input" in error.msg


UNBATCHED_INPUT = graph(
    "    emb: {type: Embedding, input: ids, num_embeddings: 10, embedding_dim: 3}\n"
    "    bias: {type: Linear, input: table, out_features: 3}\n"
    "    out: {type: Add, input: [emb, bias]}\n",
    "input:\n  ids: {shape: [5], dtype: int64}\n  table: {shape: [5, 2], batch: false}",
    "  inputs: [ids, table]\n",
)


def test_an_input_without_a_batch() -> None:
    model = specnet.build(UNBATCHED_INPUT)
    ids, table = torch.randint(0, 10, (2, 5)), torch.randn(5, 2)
    torch.testing.assert_close(model(ids, table), model.emb(ids) + model.bias(table))
    assert "table (5, 2) (no batch)" in str(specnet.summary(UNBATCHED_INPUT))
    copy = exported(UNBATCHED_INPUT)
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(copy(ids, table), model(ids, table))


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ("input: {shape: [4], batch: false}", "'batch' is for one of several named inputs"),
        ("input: {a: {shape: [4], batch: false}}", "at least one input needs the batch"),
        ("input: {a: [4], b: {shape: [4], batch: 0}}", "'batch' is true or false"),
    ],
)
def test_batch_false_is_for_some_of_several_inputs(inputs: str, fragment: str) -> None:
    (error,) = errors(f"{inputs}\nmodel: ReLU\n")
    assert fragment in error.msg


def test_positions_are_an_arange_for_an_embedding() -> None:
    spec = graph(
        "    tokens: {type: Embedding, num_embeddings: 20, embedding_dim: 8}\n"
        "    positions: {type: Arange, dim: 1, input: input}\n"
        "    wpe: {type: Embedding, num_embeddings: 6, embedding_dim: 8}\n"
        "    out: {type: Add, input: [tokens, wpe]}\n",
        "input: {shape: [6], dtype: int64}",
    )
    model = specnet.build(spec)
    ids = torch.randint(0, 20, (3, 6))
    want = model.tokens(ids) + model.wpe(torch.arange(6))
    torch.testing.assert_close(model(ids), want)
    assert "torch.arange(input.shape[1], device=input.device)" in model.code
    assert str(specnet.summary(spec).rows[2].output) == "[6] int64 (no batch)"


@pytest.mark.parametrize("dtype", ["bool", "float32", "float64"])
def test_causal_mask_is_torchs(dtype: str) -> None:
    model = specnet.build(graph(f"    m: {{type: CausalMask, dtype: {dtype}}}\n", "input: [5, 2]"))
    mask = model(torch.randn(3, 5, 2))
    if dtype == "bool":
        assert mask.tolist() == torch.ones(5, 5).triu(1).bool().tolist()
    else:
        want = nn.Transformer.generate_square_subsequent_mask(5, dtype=getattr(torch, dtype))
        torch.testing.assert_close(mask, want)


def _inline_cases() -> list[Any]:
    out = []
    for op in sorted(INLINE):
        for i, (args, items) in enumerate(SAMPLES[op]):
            if all(isinstance(x, (list, Ints, Unbatched)) for x in items) and any(
                not isinstance(x, Unbatched) for x in items
            ):
                out.append(pytest.param(op, args, items, id=f"{op}-{i}"))
    return out


@pytest.mark.parametrize(("op", "args", "items"), _inline_cases())
def test_every_inlined_op_computes_what_its_module_does(
    op: str, args: dict[str, Any], items: list[Any]
) -> None:
    """The op written inline in a graph's forward, on each of its shape-rule samples."""
    names = [f"x{i}" for i in range(len(items))]
    inputs = {}
    for name, item in zip(names, items, strict=True):
        if isinstance(item, list):
            inputs[name] = {"shape": item}
        else:
            dtype = item.dtype if isinstance(item, (Ints, Unbatched)) else "float32"
            inputs[name] = {
                "shape": item.shape,
                "dtype": dtype,
                "batch": not isinstance(item, Unbatched),
            }
    spec = {
        "input": inputs,
        "model": {
            "type": "Graph",
            "inputs": names,
            "nodes": {"op": {"type": op, **args, "input": names}},
        },
    }
    torch.manual_seed(0)
    xs = tensors(items)
    model = specnet.build(spec).eval()
    assert "op" not in dict(model.named_children())  # an expression, not a module
    module = layers()[op].build_target()(**args).eval()
    got, want = model(*xs), module(*xs)
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)
    else:
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_stochastic_depth_is_torchvisions(mode: str, p: float) -> None:
    ops = pytest.importorskip("torchvision.ops")
    ours, theirs = StochasticDepth(p, mode), ops.StochasticDepth(p, mode)
    x = torch.randn(8, 3, 4, 4)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        torch.manual_seed(3)
        a = ours(x)
        torch.manual_seed(3)
        torch.testing.assert_close(a, theirs(x), rtol=0, atol=0)
    assert repr(ours) == f"StochasticDepth(p={p}, mode={mode})"


def test_stochastic_depth_needs_no_torchvision() -> None:
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "import specnet, torch\n"
        "m = specnet.build('input: [4]\\nmodel: {type: StochasticDepth, p: 0.5, mode: row}\\n')\n"
        "torch.manual_seed(0); y = m(torch.ones(64, 4))\n"
        "assert set(y[:, 0].tolist()) == {0.0, 2.0}\n"
        "m.eval(); assert m(torch.ones(2, 4)).tolist() == torch.ones(2, 4).tolist()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


AUX = graph(
    "    conv: {type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}\n"
    "    act: ReLU\n"
    "    aux_pool: {type: AdaptiveAvgPool2d, output_size: 1, input: conv}\n"
    "    aux_flat: Flatten\n"
    "    aux: {type: Linear, out_features: 3}\n"
    "    pool: {type: AdaptiveAvgPool2d, output_size: 1, input: act}\n"
    "    flat: Flatten\n"
    "    fc: {type: Linear, out_features: 3}\n"
    "  output: fc\n"
    "  train_output: [fc, aux]\n",
    "input: [2, 6, 6]",
)


class GoogLeNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.aux = nn.Linear(4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Any:
        conv = self.conv(x)
        fc = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.act(conv), 1), 1))
        if self.training:
            aux = self.aux(torch.flatten(nn.functional.adaptive_avg_pool2d(conv, 1), 1))
            return fc, aux
        return fc


def test_train_output_runs_its_own_nodes_in_training_only() -> None:
    model, hand = specnet.build(AUX), GoogLeNetLike()
    assert shapes(model) == shapes(hand)
    model.load_state_dict(hand.state_dict())
    calls: list[str] = []
    model.aux.register_forward_hook(lambda *_: calls.append("aux"))
    x = torch.randn(2, 2, 6, 6)
    model.eval()
    hand.eval()
    torch.testing.assert_close(model(x), hand(x))
    assert calls == []  # the auxiliary head does not run in eval mode
    model.train()
    hand.train()
    (a, b), (c, d) = model(x), hand(x)
    torch.testing.assert_close((a, b), (c, d))
    assert calls == ["aux"]
    body = model.code.split("if self.training:")
    assert "self.aux" in body[1] and "self.aux" not in body[0]
    assert body[1].splitlines()[-2].strip() == "return fc, aux"


def test_train_output_in_summary_export_tracing_and_scripting() -> None:
    summary = specnet.summary(AUX)
    assert summary.output == "[3]" and summary.train_output == "([3], [3])"
    assert "Training output: ([3], [3])" in str(summary)
    model = specnet.build(AUX)
    copy = exported(AUX)
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
    for training in (True, False):
        for m in (model, copy, scripted):
            m.train(training)
        torch.testing.assert_close(copy(x), model(x))
        torch.testing.assert_close(scripted(x), model(x))
    model.eval()
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))


def test_train_output_names_are_checked() -> None:
    (error,) = errors(graph("    a: ReLU\n  train_output: [a, b]\n"))
    assert error.path == ("model", "train_output", 1)
    assert "train_output 'b' is not a node of this graph" in error.msg


UNUSED = graph(
    "    fc: {type: Linear, out_features: 4}\n"
    "    spare: {type: ReLU, input: fc}\n"
    "    out: {type: Tanh, input: fc}\n"
)


def test_a_node_no_output_uses_is_a_located_warning() -> None:
    with pytest.warns(specnet.SpecWarning) as record:
        spec = specnet.load(UNUSED)
    (warning,) = [w.message for w in record]
    assert isinstance(warning, specnet.SpecWarning)
    assert warning.item.path == ("model", "nodes", "spare")
    assert (warning.item.line, warning.item.col) == (6, 5)
    assert str(warning).startswith(
        "<spec>:6:5: model.nodes.spare: warning: node 'spare' is never used"
    )
    specnet.build(spec)  # a warning, not an error


def test_nodes_used_by_train_output_or_call_are_used() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", specnet.SpecWarning)
        specnet.load(AUX)
        specnet.load(
            graph(
                "    mask: {type: CausalMask, input: input}\n"
                "    att: {type: MultiheadAttention, num_heads: 1, batch_first: true,"
                " input: input, call: {attn_mask: mask}}\n",
                "input: [3, 4]",
            )
        )


def test_the_command_prints_warnings_on_stderr_and_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(UNUSED)
    for command in (["validate"], ["summary"]):
        done = subprocess.run(
            [sys.executable, "-m", "specnet", *command, str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if "warning:" in line]
        assert lines == [
            f"{path}:6:5: model.nodes.spare: warning: node 'spare' is never used: "
            "no output of the graph reads its value, directly or through other nodes"
        ]
        assert "warning" not in done.stdout


def test_conv1d_as_a_learned_matmul() -> None:
    """Hugging Face's Conv1D (GPT-2): x @ weight + bias, with the weight stored [in, out]."""
    spec = graph(
        "    weight: {type: Parameter, shape: [4, 6], init: normal, std: 0.02}\n"
        "    bias: {type: Parameter, shape: [6]}\n"
        "    product: {type: MatMul, input: [input, weight]}\n"
        "    out: {type: Add, input: [product, bias]}\n",
        "input: [5, 4]",
    )
    model = specnet.build(spec)
    x = torch.randn(2, 5, 4)
    want = torch.addmm(model.bias, x.view(-1, 4), model.weight).view(2, 5, 6)
    torch.testing.assert_close(model(x), want)
    assert "input @ self.weight" in model.code and "+ self.bias" in model.code


def test_held_tensors_load_from_yaml_names(tmp_path: Path) -> None:
    """A Graph inside a Sequential: keys are '<path>.<node>', as a hand-written module has."""
    nested = yaml.safe_load(VIT)["model"]
    spec = {"input": [3, 32, 32], "model": {"type": "Sequential", "layers": {"encoder": nested}}}
    model = specnet.build(spec)
    assert "encoder.pos_embedding" in model.state_dict()
    assert "encoder.pos_embedding.weight" not in model.state_dict()
