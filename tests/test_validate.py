"""Validation: every error located, all at once, with suggestions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import specnet
from specnet import SpecError, SpecValidationError
from specnet._front.spec import Graph, Layer, ModuleDict, ModuleList, Sequential


def errors(text: str) -> list[str]:
    """Error lines of a spec, without the ``<spec>`` file prefix."""
    with pytest.raises(SpecValidationError) as info:
        specnet.load(text)
    return [str(e).removeprefix("<spec>:") for e in info.value.errors]


LENET = """\
input: [1, 32, 32]
model:
  type: Sequential
  layers:
    conv1: {type: Conv2d, out_channels: 6, kernel_size: 3}
    relu1: ReLU
    pool1: {type: MaxPool2d, kernel_size: 2}
    flat: Flatten
    fc: {type: Linear, out_features: 10}
"""


def test_valid_spec_becomes_typed_nodes() -> None:
    spec = specnet.load(LENET)
    assert spec.input.shape == (1, 32, 32)
    assert spec.input.dtype == "float32"
    assert isinstance(spec.model, Sequential)
    names = [name for name, _ in spec.model.children]
    assert names == ["conv1", "relu1", "pool1", "flat", "fc"]
    conv = spec.model.children[0][1]
    assert isinstance(conv, Layer)
    assert conv.type == "Conv2d"
    assert dict(conv.args) == {"out_channels": 6, "kernel_size": 3}


def test_every_error_is_reported_at_once_with_location() -> None:
    text = """\
input: [1, 32, 32]
modle: 1
model:
  type: Sequential
  layers:
    - {type: Conv2D, out_channels: 6, kernel_size: 3}
    - {type: Conv2d, out_channels: 6, kernal_size: 3}
    - {type: Conv2d, out_channels: "6", kernel_size: [3, 3, 3]}
    - {type: Linear}
    - 42
"""
    assert errors(text) == [
        "2:1: modle: unknown top-level key 'modle'; did you mean 'model'?",
        "6:14: model.layers[0].type: unknown layer type 'Conv2D'; did you mean 'Conv2d'?",
        "7:39: model.layers[1].kernal_size: unknown argument 'kernal_size' for Conv2d; did you mean 'kernel_size'?",
        "8:36: model.layers[2].out_channels: expected int >= 1, got '6'",
        "8:54: model.layers[2].kernel_size: expected int >= 1 or list of 2 int >= 1, got [3, 3, 3]",
        "9:7: model.layers[3].out_features: missing required argument 'out_features' for Linear",
        "10:7: model.layers[4]: expected a layer (a type name, or a mapping with 'type'), got 42",
    ]


def test_inferred_arguments_may_be_left_out_or_given() -> None:
    spec = specnet.load("input: [4]\nmodel: {type: Linear, in_features: 4, out_features: 2}\n")
    assert isinstance(spec.model, Layer)
    assert spec.model.args["in_features"] == 4
    specnet.load("input: [4]\nmodel: {type: Linear, out_features: 2}\n")


def test_strict_types_match_json_schema() -> None:
    assert errors("input: [4]\nmodel: {type: Linear, out_features: 2.0}\n") == [
        "2:37: model.out_features: expected int >= 1, got 2.0"
    ]
    assert errors("input: [4]\nmodel: {type: Linear, out_features: 2, bias: no}\n") == [
        "2:46: model.bias: expected bool, got 'no' (write true or false)"
    ]
    # float arguments accept whole numbers, as JSON Schema's "number" does
    specnet.load("input: [4]\nmodel: {type: Dropout, p: 0}\n")


def test_repeat_unrolls_in_lists_and_nests_under_names() -> None:
    spec = specnet.load(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Linear, out_features: 4, repeat: 3}\n    - ReLU\n"
    )
    assert isinstance(spec.model, Sequential)
    assert [n for n, _ in spec.model.children] == ["0", "1", "2", "3"]
    named = specnet.load(
        "input: [4]\nmodel:\n  type: Sequential\n  layers:\n"
        "    stage: {type: Linear, out_features: 4, repeat: 2}\n"
    )
    assert isinstance(named.model, Sequential)
    [(name, stage)] = named.model.children
    assert name == "stage"
    assert isinstance(stage, Sequential)
    assert [n for n, _ in stage.children] == ["0", "1"]
    assert errors(
        "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, repeat: -1}]}\n"
    ) == ["2:57: model.layers[0].repeat: 'repeat' must be a whole number >= 0, got -1"]
    assert errors("input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, repeat: 0}]}\n") == [
        "2:35: model.layers: Sequential has no layers left ('repeat: 0' and 'if: false' leave "
        "layers out)"
    ]


def test_blocks_substitute_parameters_keeping_types() -> None:
    text = """\
input: [3, 32, 32]
blocks:
  ConvBNReLU:
    params: {channels: int, stride: 1, kernel: [3, 3]}
    body:
      type: Sequential
      layers:
        - {type: Conv2d, out_channels: $channels, kernel_size: $kernel, stride: $stride, bias: false}
        - BatchNorm2d
        - ReLU
model:
  type: Sequential
  layers:
    - {type: ConvBNReLU, channels: 32}
    - {type: ConvBNReLU, channels: 64, stride: 2, repeat: 2}
"""
    spec = specnet.load(text)
    assert isinstance(spec.model, Sequential)
    assert len(spec.model.children) == 3
    first = spec.model.children[0][1]
    assert isinstance(first, Sequential)
    conv = first.children[0][1]
    assert isinstance(conv, Layer)
    assert dict(conv.args) == {
        "out_channels": 32,
        "kernel_size": [3, 3],
        "stride": 1,
        "bias": False,
    }


def test_block_errors_point_inside_the_block_and_at_the_use() -> None:
    text = """\
input: [3, 32, 32]
blocks:
  Conv:
    params: {channels: int, k: 3}
    body: {type: Conv2d, out_channels: $channels, kernel_size: $k, padingg: 1}
  Other:
    params: {n: int}
    body: {type: Linear, out_features: $m}
model:
  type: Sequential
  layers:
    - {type: Conv, channels: 8, k: [1, 2, 3]}
    - {type: Conv, chanels: 8}
    - {type: Conv, channels: true}
"""
    assert errors(text) == [
        "5:68: blocks.Conv.body.padingg: unknown argument 'padingg' for Conv2d; did you mean 'padding'?",
        "8:40: blocks.Other.body.out_features: unknown block parameter '$m'",
        "12:36: model.layers[0].k: expected int >= 1 or list of 2 int >= 1, got [1, 2, 3] "
        "[passed into the block at <spec>:5:64 (blocks.Conv.body.kernel_size)]",
        "13:20: model.layers[1].chanels: unknown parameter 'chanels' for block Conv; did you mean 'channels'?",
        "14:30: model.layers[2].channels: expected int, got true",
    ]


def test_recursive_blocks_are_refused() -> None:
    text = "input: [4]\nblocks:\n  A: {body: {type: Sequential, layers: [A]}}\nmodel: A\n"
    assert any("block 'A' uses itself" in e for e in errors(text))


def test_expansion_is_bounded() -> None:
    text = """\
input: [4]
blocks:
  B1: {body: {type: Sequential, layers: [{type: ReLU, repeat: 1000}]}}
  B2: {body: {type: Sequential, layers: [{type: B1, repeat: 1000}]}}
model: B2
"""
    assert any("model too large" in e for e in errors(text))


def test_graph_references() -> None:
    text = """\
input: [8]
model:
  type: Graph
  nodes:
    a: {type: Linear, out_features: 8}
    b: {type: Add, input: [input, a]}
    c: {type: Concat, input: [b, d, zz]}
    d: ReLU
  output: [c, e]
"""
    assert errors(text) == [
        "7:34: model.nodes.c.input[1]: input 'd' is defined later in the graph; nodes may only use earlier nodes",
        "7:37: model.nodes.c.input[2]: input 'zz' is not a graph input or an earlier node; "
        "it may be one of 'input', 'a', 'b'",
        "9:15: model.output[1]: output 'e' is not a node of this graph",
    ]
    spec = specnet.load(text.replace(", d, zz", ", a").replace("[c, e]", "c"))
    assert isinstance(spec.model, Graph)
    assert [(n.name, n.inputs) for n in spec.model.nodes] == [
        ("a", ("input",)),
        ("b", ("input", "a")),
        ("c", ("b", "a")),
        ("d", ("c",)),
    ]
    assert spec.model.outputs == ("c",)


def test_input_key_outside_a_graph_is_an_error() -> None:
    assert errors("input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, input: x}]}\n") == [
        "2:49: model.layers[0].input: 'input' names a node's inputs and is only allowed on the nodes of a Graph"
    ]


def test_module_list_and_dict() -> None:
    spec = specnet.load(
        "input: [1, 28, 28]\nmodel:\n  type: ModuleList\n  between: ReLU\n  layers:\n"
        "    - {type: Conv2d, out_channels: 20, kernel_size: 5}\n"
        "    - {type: Conv2d, out_channels: 64, kernel_size: 5}\n"
    )
    assert isinstance(spec.model, ModuleList)
    assert isinstance(spec.model.between, Layer)
    spec = specnet.load(
        "input: [1, 28, 28]\nmodel:\n  type: ModuleDict\n  forward: [conv1, relu, conv2, relu]\n  layers:\n"
        "    conv1: {type: Conv2d, out_channels: 20, kernel_size: 5}\n"
        "    conv2: {type: Conv2d, out_channels: 64, kernel_size: 5}\n    relu: ReLU\n"
    )
    assert isinstance(spec.model, ModuleDict)
    assert spec.model.forward == ("conv1", "relu", "conv2", "relu")
    assert errors(
        "input: [4]\nmodel: {type: ModuleDict, layers: {a: ReLU}, forward: [a, b]}\n"
    ) == ["2:59: model.forward[1]: 'forward' names unknown layer 'b'"]


def test_inputs() -> None:
    spec = specnet.load(
        "input: {shape: [32], dtype: int64}\nmodel: {type: Embedding, num_embeddings: 10, embedding_dim: 4}\n"
    )
    assert spec.input.dtype == "int64"
    spec = specnet.load(
        "input: {a: [4], b: [4]}\nmodel:\n  type: Graph\n  inputs: [a, b]\n  nodes:\n    s: {type: Add, input: [a, b]}\n"
    )
    assert list(spec.inputs) == ["a", "b"]
    assert errors("input: [0, -1]\nmodel: ReLU\n") == [
        "1:9: input[0]: a dimension must be a whole number >= 1, got 0",
        "1:12: input[1]: a dimension must be a whole number >= 1, got -1",
    ]
    assert errors("input: {a: [4], b: [4]}\nmodel: ReLU\n") == [
        "2:8: model: a spec with several inputs (a, b) needs a Graph model"
    ]


def test_train_section_is_validated_with_torch_names() -> None:
    text = """\
input: [4]
model: {type: Linear, out_features: 2}
train:
  optimizer: {type: SGD, lr: 0.1, momentom: 0.9}
  loss: CrossEntropyLos
  epochs: 0
  batchsize: 3
"""
    assert errors(text) == [
        "4:35: train.optimizer.momentom: unknown argument 'momentom' for SGD; did you mean 'momentum'?",
        "5:9: train.loss.type: unknown loss type 'CrossEntropyLos'; did you mean 'CrossEntropyLoss'?",
        "6:11: train.epochs: expected int >= 1, got 0",
        "7:3: train.batchsize: unknown train setting 'batchsize'; did you mean 'batch_size'?",
    ]
    spec = specnet.load(
        text.replace("momentom", "momentum")
        .replace("Los\n", "Loss\n")
        .replace("epochs: 0", "epochs: 2")
        .replace("batchsize", "batch_size")
    )
    assert spec.train is not None
    assert spec.train.optimizer.type == "SGD"
    assert spec.train.optimizer.args == {"lr": 0.1, "momentum": 0.9}


def test_load_accepts_paths_text_and_dicts(tmp_path: Path) -> None:
    p = tmp_path / "net.yaml"
    p.write_text(LENET)
    for source in (p, str(p), LENET, specnet.load(LENET).data):
        assert isinstance(specnet.load(source).model, Sequential)
    with pytest.raises(SpecError) as info:
        specnet.load({"input": [3], "model": {"type": "Lnear"}})
    assert (
        str(info.value) == "<spec>: model.type: unknown layer type 'Lnear'; did you mean 'Linear'?"
    )


def test_validate_returns_error_lines(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("input: [3]\nmodel: Lnear\n")
    assert specnet.validate(p) == [
        f"{p}:2:8: model.type: unknown layer type 'Lnear'; did you mean 'Linear'?"
    ]
    assert specnet.validate(LENET) == []


def test_register_custom_layer() -> None:
    import torch
    from torch import nn

    from specnet._front.registry import layers

    class Swish(nn.Module):
        """x * sigmoid(beta * x)."""

        def __init__(self, beta: float = 1.0, learnable: bool = False) -> None:
            super().__init__()
            self.beta = nn.Parameter(torch.tensor(beta), requires_grad=learnable)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(self.beta * x)

    specnet.register(Swish)
    try:
        spec = specnet.load("input: [4]\nmodel: {type: Swish, beta: 2}\n")
        assert isinstance(spec.model, Layer)
        assert errors("input: [4]\nmodel: {type: Swish, beta: fast}\n") == [
            "2:28: model.beta: expected float, got 'fast'"
        ]
        with pytest.raises(ValueError, match="already registered"):
            specnet.register(Swish)

        class NotAModule:
            def __init__(self, scale: float = 1.0) -> None:
                self.scale = scale

        with pytest.raises(TypeError, match=r"nn\.Module subclass"):
            specnet.register(NotAModule, shape=lambda args, shape: shape)
        assert "NotAModule" not in layers()
        from specnet._front.schema import build_schema

        assert "layer.Swish" in build_schema()["definitions"]
    finally:
        layers().remove("Swish")


def test_every_path_into_validation_checks_the_train_section() -> None:
    from specnet._front.source import read_document
    from specnet._front.validate import validate_document

    text = "input: [4]\nmodel: ReLU\ntrain: {epochz: 3}\n"
    with pytest.raises(SpecValidationError) as info:
        validate_document(read_document(text))
    (error,) = info.value.errors
    assert (error.line, error.col) == (3, 9)
    assert "unknown" in error.msg and "did you mean 'epochs'" in error.msg


def test_validate_refuses_what_build_would_refuse() -> None:
    """Argument ranges and parameter-free 'between' are checked without torch."""
    spec = (
        "input: [3, 8, 8]\n"
        "model:\n"
        "  type: ModuleList\n"
        "  layers:\n"
        "    - {type: Conv2d, out_channels: -2, kernel_size: 3}\n"
        "    - {type: Dropout, p: 1.5}\n"
        "  between: {type: Linear, out_features: 4}\n"
    )
    assert errors(spec) == [
        "5:36: model.layers[0].out_channels: expected int >= 1, got -2",
        "6:26: model.layers[1].p: expected float in [0, 1], got 1.5",
        "7:12: model.between: 'between' is applied after every layer and must have no "
        "parameters; Linear has parameters (a parameter-free layer such as ReLU or Dropout)",
    ]
    assert errors(spec.replace("{type: Linear, out_features: 4}", "ReLU")) == errors(spec)[:2]


def test_a_child_name_with_a_trailing_newline_is_refused() -> None:
    # "$" in a regex matches before a final newline: names are checked with fullmatch.
    spec = {"input": [3], "model": {"type": "Sequential", "layers": {"fc\n": "ReLU"}}}
    with pytest.raises(SpecValidationError, match="must use only letters"):
        specnet.load(spec)


@pytest.mark.parametrize("name", ["../../etc/x", "a b", "x" * 65, "-rf", "", ".hidden", 5])
def test_a_spec_name_is_a_safe_bounded_name(name: object) -> None:
    with pytest.raises(SpecValidationError) as info:
        specnet.load({"name": name, "input": [3], "model": "ReLU"})
    assert [e.path for e in info.value.errors] == [("name",)]


@pytest.mark.parametrize("name", ["lenet", "resnet-18", "v1.2_run", "x" * 64, "3d_unet"])
def test_ordinary_spec_names_are_kept(name: str) -> None:
    assert specnet.load({"name": name, "input": [3], "model": "ReLU"}).name == name


def test_did_you_mean_skips_very_long_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import difflib

    from specnet._front.limits import MAX_SUGGEST

    real = difflib.SequenceMatcher

    def bounded(isjunk: object, a: str, b: str) -> difflib.SequenceMatcher[str]:
        assert len(a) <= MAX_SUGGEST, "difflib ran over a very long unknown name"
        return real(isjunk, a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(difflib, "SequenceMatcher", bounded)
    long = "Conv" * 5000
    errors = specnet.validate(f"input: [3, 8, 8]\nmodel: {{type: {long}}}\n")
    assert len(errors) == 1 and "2:15: model.type: unknown layer type" in errors[0]
    key = "kernal_size" * 90  # YAML keys are at most 1024 characters
    errors = specnet.validate(f"input: [3, 8, 8]\nmodel: {{type: Conv2d, {key}: 1}}\n")
    assert any(f"unknown argument '{key}' for Conv2d" in e for e in errors)


def test_block_substitution_is_counted_before_anything_is_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000 values passed to a body that uses them 2,000 times: two million copies,
    # refused before the first (the substitution would otherwise copy them all).
    from specnet._front.validate import blocks

    def no_copy(*args: object) -> None:
        raise AssertionError("substituted before the budget was checked")

    monkeypatch.setattr(blocks, "_substitute", no_copy)
    refs = ", ".join(["$v"] * 2000)
    items = ", ".join(["1"] * 1000)
    text = (
        f"blocks:\n  B:\n    params: {{v: any}}\n    body: {{type: Sequential, layers: [{refs}]}}\n"
        f"input: [3]\nmodel: {{type: B, v: [{items}]}}\n"
    )
    with pytest.raises(SpecValidationError, match="MAX_EXPANDED") as info:
        specnet.load(text)
    [err] = info.value.errors
    assert (err.line, err.col, err.path) == (6, 15, ("model", "type"))


def test_repeat_is_bounded_before_it_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    from specnet._front.validate import document

    class NoExpansion(document.Sequential):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the repeat was expanded before the layer budget was checked")

    monkeypatch.setattr(document, "Sequential", NoExpansion)
    with pytest.raises(SpecValidationError, match="MAX_LAYERS") as info:
        specnet.load(
            "input: [3]\nmodel: {type: Linear, out_features: 3, repeat: 4611686018427387904}\n"
        )
    [err] = info.value.errors
    assert err.path == ("model", "repeat")


def test_huge_layers_are_refused_before_torch_builds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # The parameter budget is checked by shape inference, before any constructor runs.
    from specnet._build import compiler

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the compiler ran on a model over the parameter budget")

    monkeypatch.setattr(compiler, "materialize", no_build)
    text = "input: [3]\nmodel: {type: Sequential, layers: [{type: Linear, out_features: 1000000}, {type: Linear, out_features: 1000000}]}\n"
    with pytest.raises(SpecError, match="MAX_PARAMETERS") as info:
        specnet.build(text)
    assert [e.path for e in info.value.errors] == [("model", "layers", 1)]
    assert specnet.validate(text) == [str(info.value.errors[0])]


@pytest.mark.parametrize(
    ("train", "path", "fragment"),
    [
        ({"optimizer": {"type": "SGD", "lr": -1}}, "train.optimizer.lr", "float >= 0"),
        ({"optimizer": {"type": "Adam", "betas": [2, 2]}}, "train.optimizer.betas", "in [0, 1)"),
        (
            {"optimizer": {"type": "AdamW", "weight_decay": -1}},
            "train.optimizer.weight_decay",
            ">= 0",
        ),
        ({"optimizer": {"type": "SGD", "momentum": -1}}, "train.optimizer.momentum", ">= 0"),
        ({"optimizer": {"type": "RMSprop", "eps": -1.0}}, "train.optimizer.eps", ">= 0"),
        ({"schedule": {"type": "StepLR", "step_size": 0}}, "train.schedule.step_size", ">= 1"),
        ({"schedule": {"type": "ExponentialLR", "gamma": 0.0}}, "train.schedule.gamma", "> 0"),
        (
            {"schedule": {"type": "ReduceLROnPlateau", "factor": 1.0}},
            "train.schedule.factor",
            "[0, 1)",
        ),
        (
            {"loss": {"type": "CrossEntropyLoss", "label_smoothing": 2.0}},
            "train.loss.label_smoothing",
            "[0, 1]",
        ),
    ],
)
def test_train_arguments_torch_refuses_are_refused_at_the_spec_line(
    train: dict[str, object], path: str, fragment: str
) -> None:
    section = {"data": "Synthetic", "loss": "MSELoss", "optimizer": "SGD", **train}
    text = json.dumps(
        {"input": [3], "model": {"type": "Linear", "out_features": 2}, "train": section}
    )
    [line] = specnet.validate(text)
    assert f": {path}: expected" in line and fragment in line
    assert line.startswith("<spec>:1:")
