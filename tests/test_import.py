"""specnet.from_module and `specnet import`: PyTorch code as specs, checked by round trips.

Every spec of examples/ (and the zoo) is built, imported back and compared; so are a sample
of torchvision's and timm's models (random weights): same state_dict keys in order and
shapes, the module's weights loaded with strict=True, the same eval outputs. The full
campaign over every torchvision classifier and the timm sample is bench/imports.py.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _imports import EXAMPLES, ROOT, own_case, own_specs, timm_case, torchvision_case
from torch import nn

import specnet
from specnet._cli.main import main
from specnet._front.registry import layers
from specnet._import.api import import_module, match

OWN = own_specs()


@pytest.mark.parametrize(
    ("path", "variant"),
    OWN,
    ids=[f"{p.relative_to(EXAMPLES)}-{v}" if v else str(p.relative_to(EXAMPLES)) for p, v in OWN],
)
def test_every_own_spec_round_trips(path: Path, variant: str | None) -> None:
    outcome = own_case(path, variant)
    assert outcome.exact, outcome.detail
    # a family file (params, variants, tables) describes more than the one variant imported;
    # the import stays within about twice its length (the README reports each)
    assert outcome.lines <= 2 * len(path.read_text().splitlines()) + 10


TORCHVISION = [
    "resnet18", "mobilenet_v3_small", "densenet121", "convnext_tiny", "googlenet",
    "efficientnet_b0", "squeezenet1_1", "shufflenet_v2_x0_5", "regnet_y_400mf", "mnasnet0_5",
    "vit_b_32", "alexnet",
]  # fmt: skip


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_round_trip(name: str) -> None:
    outcome = torchvision_case(name)
    assert outcome.exact, outcome.detail


TIMM = ["resnet50d", "vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "mixer_s16_224",
        "efficientnet_b0", "regnety_002", "xception41"]  # fmt: skip


@pytest.mark.parametrize("name", TIMM)
def test_timm_models_round_trip(name: str) -> None:
    outcome = timm_case(name)
    assert outcome.exact, outcome.detail


def test_resnet50_reads_as_written() -> None:
    import torchvision

    model = torchvision.models.resnet50()
    text = import_module(model, (3, 64, 64)).text
    lines = text.splitlines()
    assert lines[0].startswith("# yaml-language-server: $schema=")
    assert Path(lines[0].split("=", 1)[1]).name == "specnet.schema.json"
    doc = yaml.safe_load(text)
    # a block for the repeated class, with the values that differ as parameters
    assert {"Bottleneck", "Bottleneck2"} <= set(doc["blocks"])
    body = doc["blocks"]["Bottleneck"]["body"]
    assert body["type"] == "Graph" and body["nodes"]["add"]["input"] == ["bn3", "input"]
    # a chain is a Sequential; torch's defaults and inferred arguments are left out
    model_node = doc["model"]
    assert model_node["type"] == "Sequential"
    assert model_node["layers"]["conv1"] == {
        "type": "Conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3, "bias": False,
    }  # fmt: skip
    assert "in_channels" not in text and "dilation" not in text and "num_features" not in text
    # identical neighbours repeat; each node's comment is its shape
    assert model_node["layers"]["layer1"]["layers"][-1]["repeat"] == 2
    assert (
        "conv1: {type: Conv2d, out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}  # [64, 32, 32]"
        in text
    )
    assert match(model, text, (3, 64, 64)).exact


class Tower(nn.Module):
    """Four blocks of one class that differ in one argument: a block and a table."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(Unit(4, d) for d in (1, 2, 3, 4)), *(Unit(4, 1) for _ in range(3))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Unit(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(x))


def test_repeated_classes_become_a_block_with_tables_and_repeats() -> None:
    model = Tower()
    text = import_module(model, (4, 16, 16)).text
    doc = yaml.safe_load(text)
    assert list(doc["blocks"]) == ["Unit"]
    unit = doc["blocks"]["Unit"]
    assert unit["params"] == {"dilation": 1}  # named after the instances' attribute
    assert unit["body"]["nodes"]["conv"]["dilation"] == "$dilation"
    assert doc["model"]["layers"]["blocks"]["layers"] == [
        {
            "type": "Unit",
            "for": [{"dilation": 1}, {"dilation": 2}, {"dilation": 3}, {"dilation": 4}],
        },
        {"type": "Unit", "repeat": 3},
    ]
    assert match(model, text, (4, 16, 16)).exact


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.token = nn.Parameter(torch.zeros(1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return torch.cat([self.b(y) * 0.5, x + self.token], dim=1).flatten(1)


def test_branches_are_a_graph_and_inline_calls_are_ops() -> None:
    model = Branchy()
    text = import_module(model, (8,)).text
    node = yaml.safe_load(text)["model"]
    assert node["type"] == "Graph"
    kinds = {name: n["type"] if isinstance(n, dict) else n for name, n in node["nodes"].items()}
    assert kinds["token"] == "Parameter" and node["nodes"]["token"]["shape"] == [1, 8]
    assert {"ReLU", "Scale", "Add", "Concat"} <= set(kinds.values())
    assert match(model, text, (8,)).exact


def _line_of(fn: object, code: str) -> int:
    lines, start = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return start + next(i for i, line in enumerate(lines) if code in line)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # depends on the data
            return self.fc(x)
        return x


class Subtracts(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sub(x, x.mean(dim=1, keepdim=True))


class Shares(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


class Several(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = DataDependent()
        self.center = Subtracts()
        self.twice = Shares()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twice(self.center(self.gate(x)))


def test_what_cannot_be_expressed_is_listed_with_paths_and_lines() -> None:
    with pytest.raises(specnet.SpecImportError) as info:
        specnet.from_module(Several(), (4,))
    problems = {p.path: p for p in info.value.problems}
    assert set(problems) == {"gate", "center", "twice"}
    here = Path(__file__).name
    gate = problems["gate"]
    assert gate.cls.endswith("test_import.DataDependent")
    assert "torch.fx cannot trace" in gate.message
    assert (
        gate.where is not None
        and f"{here}:{_line_of(DataDependent.forward, 'if x.sum()')}:" in gate.where
    )
    center = problems["center"]
    assert "torch.sub" in center.message and "no spec equivalent" in center.message
    assert (
        center.where is not None
        and f"{here}:{_line_of(Subtracts.forward, 'torch.sub')}:" in center.where
    )
    assert "called 2 times" in problems["twice"].message
    report = str(info.value)
    assert report.count("\n") == 3 and "gate (" in report and "Traceback" not in report


class Clamp(nn.Module):
    """An unregistered leaf: data-dependent, so it cannot be traced; data-only arguments."""

    def __init__(self, channels: int, limit: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.limit = limit
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.abs() > self.limit).any()):
            x = x.clamp(-self.limit, self.limit)
        return x * self.scale


def test_allow_custom_keeps_an_unregistered_leaf_as_a_custom_type() -> None:
    model = nn.Sequential(nn.Linear(3, 6), Clamp(6, limit=0.5), nn.Linear(6, 2))
    with pytest.raises(specnet.SpecImportError, match="cannot trace"):
        specnet.from_module(model, (3,))
    imported = import_module(model, (3,), allow_custom=True)
    assert "Clamp is " in imported.text and "specnet.register(Clamp" in imported.text
    assert "{type: Clamp, channels: 6, limit: 0.5}" in imported.text
    try:
        spec = specnet.from_module(model, (3,), allow_custom=True)  # registers Clamp
        assert match(model, spec, (3,)).exact
    finally:
        if "Clamp" in layers():
            layers().remove("Clamp")


class WithAux(nn.Module):
    """An auxiliary head called in training only, as GoogLeNet's."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)
        self.aux = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        if self.training:
            return self.head(h), self.aux(h)
        return self.head(h)


def test_a_training_only_head_becomes_train_output() -> None:
    model = WithAux()
    spec = specnet.from_module(model, (4,))
    node = spec.data["model"]
    assert node["output"] == "head" and node["train_output"] == ["head", "aux"]
    built = specnet.build(spec)
    built.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 4)
    built.train()
    model.train()
    assert [t.shape for t in built(x)] == [t.shape for t in model(x)]
    assert match(model, spec, (4,)).exact


def test_from_module_writes_the_file_it_loads(tmp_path: Path) -> None:
    path = tmp_path / "nets" / "mlp.yaml"
    path.parent.mkdir()
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1))
    spec = specnet.from_module(model, (5,), path=path)
    assert spec.source.file == str(path)
    modeline = path.read_text().splitlines()[0]
    schema = (path.parent / modeline.split("=", 1)[1]).resolve()
    assert schema == ROOT / "schemas" / "specnet.schema.json"
    assert specnet.validate(path) == []


def test_cli_imports_the_users_own_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n"
        "def small(width=8, classes=3):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 36, classes))\n"
        "def broken():\n"
        "    raise RuntimeError('no such weights')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mymodels", None)
    assert (
        main(
            ["import", "mymodels:small", "--arg", "width=4", "--input", "3,8,8", "-o", "small.yaml"]
        )
        == 0
    )
    assert "outputs match" in capsys.readouterr().err
    spec = yaml.safe_load((tmp_path / "small.yaml").read_text())
    assert spec["model"]["layers"][0] == {"type": "Conv2d", "out_channels": 4, "kernel_size": 3}
    assert specnet.validate(tmp_path / "small.yaml") == []

    assert main(["import", "mymodels:broken", "--input", "3,8,8"]) == 1
    err = capsys.readouterr().err
    assert (
        "mymodels:broken() raised RuntimeError: no such weights" in err and "Traceback" not in err
    )
    assert main(["import", "mymodels:smal", "--input", "3,8,8"]) == 1
    assert "did you mean 'small'" in capsys.readouterr().err
    assert main(["import", "mymodels", "--input", "3,8,8"]) == 2
    assert main(["import", "mymodels:small", "--input", "3,x"]) == 2
    assert main(["import", "nowhere_at_all:small", "--input", "3"]) == 1
    assert "cannot import 'nowhere_at_all'" in capsys.readouterr().err


def test_cli_lists_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import", "torchvision.models:swin_t", "--input", "3,224,224"])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert "cannot be written as a spec" in out.err and "swin_transformer.py:" in out.err
    assert "Traceback" not in out.err


class Attend(nn.Module):
    """Self-attention written with the functional call, its dropout in training only."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            self.qkv(x).reshape(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
        )
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=0.25 if self.training else 0.0, is_causal=True
        )
        return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], 8)


def test_attention_keeps_its_training_dropout_and_batch_moving_permutes() -> None:
    model = Attend()
    text = import_module(model, (5, 8)).text
    attention = next(
        n
        for n in yaml.safe_load(text)["model"]["nodes"].values()
        if isinstance(n, dict) and n["type"] == "ScaledDotProductAttention"
    )
    assert attention["dropout_p"] == 0.25 and attention["is_causal"] is True
    # [B, 5, 3, 2, 4] -> [3, B, 2, 5, 4] -> unbind(0): kept as [B, 3, 2, 5, 4] and Index dim 1
    assert (
        "{type: Permute, dims: [0, 2, 3, 1, 4]}" in text
        and "{type: Index, dim: 1, index: 2" in text
    )
    assert match(model, text, (5, 8)).exact


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y.add_(x)  # the traced graph still names y; the next call reads y + x
        return self.out(y)


def test_an_in_place_method_changes_what_later_calls_read() -> None:
    model = InPlace()
    spec = specnet.from_module(model, (4,))  # checks the outputs itself
    nodes = spec.data["model"]["nodes"]
    assert list(nodes) == ["fc", "add", "out"] and "input" not in nodes["out"]  # out reads add
    assert match(model, spec, (4,)).exact


class Batchwise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.shape[0]


class SlicesWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[:3].mean(dim=0)


class Detaches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(x).detach()


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (Batchwise(), "uses the batch size as a number"),
        (SlicesWeights(), "without a batch dimension"),
        (Detaches(), "stops gradients"),
    ],
    ids=["batch-size", "weight-slice", "detach"],
)
def test_what_would_differ_in_another_batch_or_in_training_is_refused(
    model: nn.Module, reason: str
) -> None:
    with pytest.raises(specnet.SpecImportError, match=reason):
        specnet.from_module(model, (4,))


class Dropouts(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = torch.nn.functional.dropout(x, 0.3, self.training)
        return kept + torch.nn.functional.dropout(x, 0.2, training=False)


def test_a_dropout_follows_the_mode_it_has_in_training() -> None:
    text = import_module(Dropouts(), (4,)).text
    nodes = yaml.safe_load(text)["model"]["nodes"]
    assert [n for n in nodes.values() if isinstance(n, dict) and n["type"] == "Dropout"] == [
        {"type": "Dropout", "p": 0.3}
    ]  # training=False is no dropout in any mode


def test_an_example_tensor_and_unbatched_inputs() -> None:
    tokens = torch.tensor([[1, 2, 0, 3]])  # one sample; the check repeats it to other batches
    model = nn.Sequential(nn.Embedding(4, 6), nn.Flatten(), nn.Linear(24, 2))
    spec = specnet.from_module(model, tokens)
    assert spec.data["input"] == {"shape": [4], "dtype": "int64"}
    # a spec's one input has the batch dimension (batch: false is for one of several)
    with pytest.raises(specnet.SpecImportError, match=r"input\.batch"):
        import_module(nn.Linear(3, 2), specnet.TensorSpec(shape=(5, 3), batch=False))


def test_cli_reports_a_model_that_fails_on_the_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "torchvision.models:resnet18", "--input", "5,32,32"]) == 1
    err = capsys.readouterr().err
    assert "fails on an example batch of shape [2, 5, 32, 32]" in err and "--input" in err
    assert "Traceback" not in err


class OwnDropPath(nn.Module):
    """A drop-path of its own (not timm's): it does something in training only."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep / (1 - self.p)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = OwnDropPath(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc(x))


class NoGrad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.a(x)
        return x


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


@pytest.mark.parametrize(
    ("model", "shape", "reason"),
    [
        (Residual(), (4,), "another path in training mode"),
        (NoGrad(), (4,), "gradients switched off"),
        (Tied(), (4,), "a.weight and b.weight are one tensor"),
        (nn.Sequential(nn.LSTM(4, 8)), (5, 4), "batch_first"),
        (nn.Sequential(nn.Embedding(5, 3)), (4,), "scales"),
    ],
    ids=["training-branch", "no-grad", "tied", "batch-second", "int-scale"],
)
def test_what_would_train_or_validate_differently_is_refused(
    model: nn.Module, shape: tuple[int, ...], reason: str
) -> None:
    if isinstance(model[0] if isinstance(model, nn.Sequential) else None, nn.Embedding):
        model = _ScaledIds()
        example: object = torch.tensor([[1, 2, 0, 3]])
    else:
        example = shape
    with pytest.raises(specnet.SpecImportError, match=reason):
        specnet.from_module(model, example)  # type: ignore[arg-type]


class _ScaledIds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e = nn.Embedding(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.e(x * 3)


class Named(nn.Module):
    """A submodule named like forward's argument, and an in-place activation of a value
    another node reads first."""

    def __init__(self) -> None:
        super().__init__()
        self.x = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.x(x)
        z = self.act(x)
        return y + z


def test_names_and_in_place_layers_keep_their_meaning() -> None:
    model = Named()
    spec = specnet.from_module(model, (4,))
    assert match(model, spec, (4,)).exact


def test_cli_refuses_bad_options_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n"
        "def mlp(eps=1e-5):\n"
        "    assert isinstance(eps, float), eps\n"
        "    return nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4, eps=eps))\n"
        "def exits():\n"
        "    raise SystemExit(0)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("nets", None)
    assert main(["import", "nets:mlp", "--input", "4", "-o", "missing/x.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import", "nets:mlp", "--input", "4", "-o", str(tmp_path)]) == 2
    assert main(["import", "nets:mlp", "--input", "4,,4"]) == 2
    assert main(["import", "nets:mlp", "--input", "100000,100000,100"]) == 2
    assert "smaller size" in capsys.readouterr().err
    assert main(["import", "nets:exits", "--input", "4"]) == 1
    assert "SystemExit" in capsys.readouterr().err
    assert main(["import", "nets:mlp", "--arg", "eps=1e-3", "--input", "4", "-o", "m.yaml"]) == 0
    assert "eps: 0.001" in (tmp_path / "m.yaml").read_text()
