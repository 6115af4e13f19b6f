"""Building models: the seeds' networks exactly, shape errors at the spec line, graphs."""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import specnet
from specnet import SpecShapeError
from specnet._build.export import python_source
from specnet._build.ops import INLINE
from specnet._front.registry import layers

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
"""The small examples; the zoo's full-size models are built and compared in test_zoo*."""


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
    assert model.code == (  # no interpreter loop; values used later keep their node's name
        "    def forward(self, input: Tensor) -> tuple[Tensor, Tensor]:\n"
        "        fc1 = self.fc1(input)\n"
        "        x = self.act(fc1)\n"
        "        res = input + x\n"
        "        cat = torch.cat([res, fc1], dim=1)\n"
        "        return cat, res\n"
    )
    assert type(model) is type(specnet.build(model_spec))  # one class per structure
    x = torch.randn(2, 8)
    cat, res = model(x)
    h = torch.relu(model.fc1(x))
    torch.testing.assert_close(res, x + h)
    torch.testing.assert_close(cat, torch.cat([x + h, model.fc1(x)], 1))


@pytest.mark.parametrize("op", sorted(op for op in INLINE if layers()[op].rule.inputs == (2, 8)))
def test_inlined_ops_compute_what_their_modules_do(op: str) -> None:
    # (every inlined op, on its shape-rule samples: tests/test_tensors.py)
    model = specnet.build(
        "input: [3]\nmodel:\n  type: Graph\n  nodes:\n    a: Tanh\n"
        f"    b: {{type: {op}, input: [input, a, a]}}\n"
    )
    assert "b" not in dict(model.named_children())  # an expression, not a module
    x = torch.randn(2, 3)
    module = layers()[op].build_target()()
    torch.testing.assert_close(model(x), module(x, torch.tanh(x), torch.tanh(x)))


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


def test_summary_rows_are_named_as_in_the_state_dict() -> None:
    rows = specnet.summary(ROOT / "examples" / "modulelist_convs.yaml").rows
    assert [(r.name, r.params) for r in rows] == [
        ("", 20 * 25 + 20 + 64 * 20 * 25 + 64),
        ("layers.0", 20 * 25 + 20),
        ("layers.1", 64 * 20 * 25 + 64),
        ("between", 0),
    ]
    rows = specnet.summary(ROOT / "examples" / "moduledict_convs.yaml").rows
    assert [r.name for r in rows] == ["", "layers.conv1", "layers.conv2", "layers.relu"]


def run_export(spec: specnet.Spec) -> tuple[str, dict[str, Any]]:
    """The exported source of ``spec``, and the namespace it leaves when it runs."""
    source = python_source(spec)
    namespace: dict[str, Any] = {}
    exec(compile(source, "<exported>", "exec"), namespace)
    return source, namespace


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_python_export_is_equivalent(path: Path) -> None:
    spec = specnet.load(path)
    source, namespace = run_export(spec)
    exported = namespace["Model"]().eval()
    built = specnet.build(spec).eval()
    exported.load_state_dict(built.state_dict(), strict=True)
    inputs = [x.detach() for x in example_input(spec)]
    with torch.no_grad():
        a, b = built(*inputs), exported(*inputs)
    torch.testing.assert_close(first_tensor(a), first_tensor(b))
    tree = ast.parse(source)
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= read, f"unused imports: {imported - read}"
    assert max(len(line) for line in source.splitlines()) <= 100


def test_python_export_reads_as_hand_written() -> None:
    source, _ = run_export(specnet.load(ROOT / "examples" / "lenet.yaml"))
    assert "\nfrom torch import Tensor, nn\n\n\nclass Reshape(nn.Module):" in source
    init = source[source.index("class Model(nn.Sequential):") :]
    assert init.splitlines()[3:7] == [  # torch's argument order; defaults left out
        "        self.conv1 = nn.Conv2d(1, 6, 3)",
        "        self.relu1 = nn.ReLU()",
        "        self.pool1 = nn.MaxPool2d((2, 2))",
        "        self.conv2 = nn.Conv2d(6, 16, 3)",
    ]


def test_python_export_runs_the_built_forward() -> None:
    """One generator of ``forward``: the exported class runs the built module's code."""
    spec = specnet.load(ROOT / "examples" / "resnet18.yaml")
    source, _ = run_export(spec)
    built = specnet.build(spec, device="meta")
    for block in (built.layer1[0], built.layer2[0]):
        assert block.code in source
    assert "        self.conv1 = nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)" in source


def test_python_export_writes_every_number_as_python() -> None:
    spec = specnet.load(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Threshold, threshold: .inf, value: .nan}\n"
        "    - {type: Hardtanh, min_val: -.inf, max_val: 1.0e+300}\n"
    )
    _, namespace = run_export(spec)
    threshold, hardtanh = namespace["Model"]()
    assert threshold.threshold == math.inf and math.isnan(threshold.value)
    assert (hardtanh.min_val, hardtanh.max_val) == (-math.inf, 1.0e300)


@pytest.mark.parametrize(
    "name",
    ['end"""\nimport os\nos.exit(3)\n"""', "back\\", 'quote"', "\u2028line\x00", "넷 'a' # b"],
)
def test_python_export_keeps_the_name_inside_the_docstring(name: str) -> None:
    # Validation allows only letters, digits, '_', '-' and '.'; the export does not rely on it.
    spec = specnet.load({"input": [4], "model": "ReLU"}).model_copy(update={"name": name})
    source, namespace = run_export(spec)
    assert namespace["__doc__"].startswith(f"{name}: exported from a specnet spec.\n\nGenerated")
    assert [type(node) for node in ast.parse(source).body][:2] == [ast.Expr, ast.ImportFrom]


def test_python_export_of_a_registered_layer_is_a_located_error(gated: type[nn.Module]) -> None:
    spec = specnet.load(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    - {type: Gated, features: 4}\n"
    )
    with pytest.raises(specnet.SpecValidationError) as info:
        python_source(spec)
    (error,) = info.value.errors
    assert error.line == 5
    assert f"({gated.__module__}.Gated); its source cannot be exported" in error.msg


# -- the installed torch against specnet's description of it ------------------------


class Gated(nn.Module):
    """A user's layer."""

    def __init__(self, features: int, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.fc = nn.Linear(features, features)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x)) * x * self.scale


@pytest.fixture
def gated() -> Iterator[type[nn.Module]]:
    specnet.register(Gated, shape=lambda args, shape: shape)
    try:
        yield Gated
    finally:
        layers().remove("Gated")


@contextmanager
def installed(name: str, cls: type[nn.Module]) -> Iterator[None]:
    """The layer type ``name`` built by ``cls``, as if the installed library had that class."""
    registry = layers()
    original = registry[name]
    registry.add(dataclasses.replace(original, factory=lambda: cls), replace=True)
    try:
        yield
    finally:
        registry.add(original, replace=True)


class OldConv2d(nn.Conv2d):
    """Conv2d as a torch without ``dilation`` would have it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)


class RenamedConv2d(nn.Conv2d):
    """Conv2d as a torch that renamed ``in_channels`` and added an argument would have it."""

    def __init__(self, channels: int, out_channels: int, kernel_size: int, layout: str) -> None:
        super().__init__(channels, out_channels, kernel_size)


CONV = "{type: Conv2d, out_channels: 2, kernel_size: 3, dilation: 2}"


def build_conv(layer: str) -> nn.Module:
    return specnet.build(
        f"input: [1, 8, 8]\nmodel:\n  type: Sequential\n  layers:\n    - {layer}\n"
    )


def test_an_argument_the_installed_torch_lacks_is_a_located_error() -> None:
    with installed("Conv2d", OldConv2d), pytest.raises(specnet.SpecValidationError) as info:
        build_conv(CONV)
    (error,) = info.value.errors
    assert error.path == ("model", "layers", 0, "dilation")
    assert (error.line, error.col) == (5, 7 + CONV.index("dilation: 2") + len("dilation: "))
    assert error.msg == f"the installed torch {torch.__version__}'s Conv2d does not take 'dilation'"
    assert any("catalog describes torch" in note for note in error.notes)


def test_inferred_and_missing_arguments_point_at_the_layer() -> None:
    with installed("Conv2d", RenamedConv2d), pytest.raises(specnet.SpecValidationError) as info:
        build_conv(CONV.replace(", dilation: 2", ""))
    assert {e.path for e in info.value.errors} == {("model", "layers", 0)}
    assert [e.msg.split("'s Conv2d ")[1] for e in info.value.errors] == [
        "does not take 'in_channels'",  # inferred: the spec does not write it
        "requires 'channels', which specnet does not give",
        "requires 'layout', which specnet does not give",
    ]


def test_a_registered_class_that_changed_is_named(gated: type[nn.Module]) -> None:
    class Renamed(nn.Module):
        def __init__(self, features: int) -> None:
            super().__init__()

    spec = "input: [4]\nmodel: {type: Gated, features: 4, scale: 2.0}\n"
    with installed("Gated", Renamed), pytest.raises(specnet.SpecValidationError) as info:
        specnet.build(spec)
    (error,) = info.value.errors
    assert error.path == ("model", "scale")
    assert error.msg == f"{Renamed.__module__}.{Renamed.__qualname__} does not take 'scale'"


def test_a_refused_call_names_the_real_class(
    gated: type[nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(specnet.SpecValidationError) as info:
        specnet.build("input: [4]\nmodel: {type: Gated, features: 4, scale: -1.0}\n")
    assert info.value.errors[0].msg == (
        f"{gated.__module__}.Gated refused these arguments: scale must be positive, got -1.0"
    )
    init = nn.Hardtanh.__init__

    @functools.wraps(init)
    def refusing(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        raise ValueError("not today")

    monkeypatch.setattr(nn.Hardtanh, "__init__", refusing)  # a check specnet does not know
    with pytest.raises(specnet.SpecValidationError) as info:
        specnet.build("input: [4]\nmodel: Hardtanh\n")
    assert info.value.errors[0].msg == "torch.nn.Hardtanh refused these arguments: not today"


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
