"""Building models: the seeds' networks exactly, shape errors at the spec line, graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import specnet
from specnet import SpecShapeError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


# -- the seeds' hand-written modules ------------------------------------------------


class FashionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_relu_stack(self.flatten(x))


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 6 * 6)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ListNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(1, 20, 5), nn.Conv2d(20, 64, 5)])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.relu(layer(x))
        return x


class DictNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(
            {"conv1": nn.Conv2d(1, 20, 5), "conv2": nn.Conv2d(20, 64, 5), "relu": nn.ReLU()}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers["relu"](self.layers["conv1"](x))
        return self.layers["relu"](self.layers["conv2"](x))


class ScaledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.Conv2d(20, 64, 5), nn.ReLU())
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x * 2)
        x = x.view(x.size(0), -1)
        x = self.fc2(F.relu(self.fc1(x)))
        return F.softmax(x, dim=1)


class MnistNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x.view(-1, 28 * 28))))


SEEDS: list[tuple[str, type[nn.Module], tuple[int, ...]]] = [
    ("fashion_mnist_mlp.yaml", FashionNet, (1, 28, 28)),
    ("lenet.yaml", LeNet, (1, 32, 32)),
    ("modulelist_convs.yaml", ListNet, (1, 28, 28)),
    ("moduledict_convs.yaml", DictNet, (1, 28, 28)),
    ("scaled_cnn_softmax.yaml", ScaledNet, (1, 12, 12)),
    ("mnist_simple_nn.yaml", MnistNN, (1, 28, 28)),
]


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize(("example", "cls", "shape"), SEEDS, ids=[s[0] for s in SEEDS])
def test_seed_network_has_the_hand_written_state_dict(
    example: str, cls: type[nn.Module], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    hand = cls().eval()
    built = specnet.build(ROOT / "examples" / example).eval()
    assert shapes(built) == shapes(hand)
    built.load_state_dict(hand.state_dict())
    assert specnet.load(ROOT / "examples" / example).input.shape == shape
    x = torch.randn(3, *shape)
    torch.testing.assert_close(built(x), hand(x))


def test_resnet18_matches_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet18().eval()
    built = specnet.build(ROOT / "examples" / "resnet18.yaml").eval()
    assert sum(p.numel() for p in built.parameters()) == 11_689_512
    assert shapes(built) == shapes(ref)
    built.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(built(x), ref(x))


def example_input(spec: specnet.Spec, batch: int = 2) -> list[torch.Tensor]:
    out = []
    for t in spec.inputs.values():
        if t.dtype.startswith("int"):
            out.append(torch.randint(0, 8, (batch, *t.shape), dtype=getattr(torch, t.dtype)))
        else:
            out.append(torch.randn(batch, *t.shape, requires_grad=True))
    return out


def first_tensor(value: Any) -> torch.Tensor:
    while isinstance(value, (tuple, list)):
        value = value[0]
    assert isinstance(value, torch.Tensor)
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_builds_and_trains_a_step(path: Path) -> None:
    spec = specnet.load(path)
    model = specnet.build(spec)
    inputs = example_input(spec)
    out = first_tensor(model(*inputs))
    assert out.shape[0] == 2
    out.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    float_inputs = [x for x in inputs if x.is_floating_point()]
    assert all(x.grad is not None for x in float_inputs)


@pytest.mark.parametrize(
    ("model", "where", "fragment"),
    [
        (
            "{type: Sequential, layers: [Flatten, {type: Linear, in_features: 100, out_features: 2}]}",
            "2:73: model.layers[1].in_features",
            "in_features is 100 but the input gives 48",
        ),
        (
            "{type: Sequential, layers: [{type: Conv2d, out_channels: 2, kernel_size: 7}]}",
            "2:81: model.layers[0].kernel_size",
            "larger than the padded input 4x4",
        ),
        (
            "{type: Graph, nodes: {a: {type: Conv2d, out_channels: 5, kernel_size: 1}, s: {type: Add, input: [input, a]}}}",
            "2:85: model.nodes.s",
            "[3, 4, 4] and [5, 4, 4]",
        ),
        ("{type: Reshape, shape: [5, 5]}", "2:31: model.shape", "[5, 5] does not fit [3, 4, 4]"),
        (
            "{type: Sequential, layers: [Flatten, {type: Conv2d, out_channels: 2, kernel_size: 1}]}",
            "2:45: model.layers[1]",
            "got [48]",
        ),
    ],
)
def test_shape_mismatch_is_a_compile_time_error_at_the_spec_line(
    model: str, where: str, fragment: str
) -> None:
    with pytest.raises(SpecShapeError) as info:
        specnet.build(f"input: [3, 4, 4]\nmodel: {model}\n")
    [err] = info.value.errors
    assert str(err).startswith(f"<spec>:{where}:"), str(err)
    assert fragment in err.msg


def test_inferred_arguments_reach_the_modules() -> None:
    model = specnet.build(
        "input: [3, 8, 8]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}\n    - BatchNorm2d\n"
        "    - Flatten\n    - {type: Linear, out_features: 5}\n    - LayerNorm\n"
    )
    assert isinstance(model, nn.Sequential)
    conv, bn, _, fc, ln = model
    assert (conv.in_channels, bn.num_features, fc.in_features, ln.normalized_shape) == (
        3,
        4,
        256,
        (5,),
    )


def test_graph_is_straight_line_code_with_spec_names() -> None:
    model_spec = """\
input: [8]
model:
  type: Graph
  nodes:
    fc1: {type: Linear, out_features: 8}
    act: ReLU
    res: {type: Add, input: [input, act]}
    cat: {type: Concat, dim: 1, input: [res, fc1]}
  output: [cat, res]
"""
    model = specnet.build(model_spec)
    assert set(model.state_dict()) == {"fc1.weight", "fc1.bias"}
    assert model.code.count("\n") == 6  # def, four statements, return: no interpreter loop
    assert "torch.cat([v2, v0], 1)" in model.code
    assert type(model) is type(specnet.build(model_spec))  # one class per structure
    x = torch.randn(2, 8)
    cat, res = model(x)
    h = torch.relu(model.fc1(x))
    torch.testing.assert_close(res, x + h)
    torch.testing.assert_close(cat, torch.cat([x + h, model.fc1(x)], 1))


def test_several_inputs() -> None:
    spec = "input: {a: [4], b: [6]}\nmodel:\n  type: Graph\n  inputs: [a, b]\n  nodes:\n    c: {type: Concat, input: [a, b]}\n    fc: {type: Linear, out_features: 2}\n"
    model = specnet.build(spec)
    assert model(torch.randn(3, 4), torch.randn(3, 6)).shape == (3, 2)
    assert model.fc.in_features == 10


def test_meta_device_and_dtype() -> None:
    model = specnet.build(ROOT / "examples" / "lenet.yaml", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    # A checkpoint loads straight into the meta-built model, initialised once.
    trained = LeNet().state_dict()
    model.load_state_dict(trained, assign=True)
    x = torch.randn(2, 1, 32, 32)
    hand = LeNet()
    hand.load_state_dict(trained)
    torch.testing.assert_close(model(x), hand(x))
    model = specnet.build(ROOT / "examples" / "lenet.yaml", dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
def test_jit_script_and_torch_compile() -> None:
    spec = ROOT / "examples" / "resnet18.yaml"
    model = specnet.build(spec).eval()
    x = torch.randn(1, 3, 64, 64)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
    small = specnet.build(ROOT / "examples" / "lenet.yaml").eval()
    compiled = torch.compile(small, backend="eager")
    y = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(y), small(y))


def test_summary_counts_params_and_macs() -> None:
    s = specnet.summary(ROOT / "examples" / "lenet.yaml")
    hand = LeNet()
    assert s.total_params == sum(p.numel() for p in hand.parameters())
    conv1 = next(r for r in s.rows if r.name == "conv1")
    assert conv1.output == "[6, 30, 30]"
    assert conv1.macs == 6 * 30 * 30 * 9
    text = str(s)
    assert "conv1" in text and f"{s.total_params:,}" in text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_python_export_is_equivalent(path: Path) -> None:
    from specnet._build.export import python_source

    spec = specnet.load(path)
    source = python_source(spec)
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<export of {path.name}>", "exec"), namespace)
    exported = namespace["Model"]().eval()
    built = specnet.build(spec).eval()
    exported.load_state_dict(built.state_dict())
    inputs = example_input(spec)
    inputs = [x.detach() for x in inputs]
    with torch.no_grad():
        a, b = built(*inputs), exported(*inputs)
    torch.testing.assert_close(first_tensor(a), first_tensor(b))


def test_self_attention_in_a_sequential_and_a_graph() -> None:
    model = specnet.build(
        "input: [5, 8]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: MultiheadAttention, num_heads: 2, batch_first: true}\n"
        "    - {type: Select, index: 0}\n"
    )
    x = torch.randn(3, 5, 8)
    mha = model[0]
    assert isinstance(mha, nn.MultiheadAttention)
    torch.testing.assert_close(model(x), mha(x, x, x)[0])
    graph = specnet.build(
        "input: {q: [5, 8], kv: [7, 8]}\nmodel:\n  type: Graph\n  inputs: [q, kv]\n  nodes:\n"
        "    att: {type: MultiheadAttention, num_heads: 2, batch_first: true, input: [q, kv]}\n"
        "    out: {type: Select, index: 0}\n"
    )
    kv = torch.randn(3, 7, 8)
    torch.testing.assert_close(graph(x, kv), graph.att(x, kv, kv)[0])


def test_built_models_pickle_and_deepcopy(tmp_path: Path) -> None:
    import copy
    import pickle

    model = specnet.build(ROOT / "examples" / "unet_small.yaml").eval()
    x = torch.randn(1, *specnet.load(ROOT / "examples" / "unet_small.yaml").input.shape)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with torch.no_grad():
            torch.testing.assert_close(clone(x), model(x))


def test_torch_compile_inductor_on_a_graph() -> None:
    """The default backend (inductor, generating C++ here) compiles a built graph."""
    model = specnet.build(
        "input: [16]\nmodel:\n  type: Graph\n  nodes:\n    fc: {type: Linear, out_features: 16}\n"
        "    act: GELU\n    res: {type: Add, input: [input, act]}\n"
    ).eval()
    compiled = torch.compile(model)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
