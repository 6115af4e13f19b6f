"""Expressions in specs, ``if``, ``repeat`` with ``$index``, ``for`` tables, names with
``{...}`` parts, ``splice``, and model ``params``/``variants``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import specnet
from specnet import SpecError


def errors(text: str, **kw: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        specnet.load(text, **kw)
    return [str(e).removeprefix("<spec>:") for e in info.value.errors]


def names(model: nn.Module) -> list[str]:
    return list(model.state_dict())


def test_expressions_in_a_block_body() -> None:
    spec = """\
input: [3, 16, 16]
blocks:
  Bottleneck:
    params: {planes: int, k: 3}
    body:
      type: Sequential
      layers:
        - {type: Conv2d, out_channels: $planes, kernel_size: $k, padding: ($k - 1) // 2}
        - {type: Conv2d, out_channels: $planes * 4, kernel_size: 1}
        - {type: Linear, out_features: "max(8, $planes // 16)"}
model: {type: Bottleneck, planes: 16, k: 5}
"""
    m = specnet.build(spec)
    assert isinstance(m, nn.Sequential)
    conv0, conv1, fc = m
    assert isinstance(conv0, nn.Conv2d) and conv0.padding == (2, 2) and conv0.kernel_size == (5, 5)
    assert isinstance(conv1, nn.Conv2d) and conv1.out_channels == 64
    assert isinstance(fc, nn.Linear) and fc.out_features == 8


def test_a_block_passes_its_parameter_on_to_an_inner_block() -> None:
    spec = """\
input: [8]
blocks:
  Inner:
    params: {out: int}
    body: {type: Linear, out_features: $out}
  Outer:
    params: {width: int}
    body:
      type: Sequential
      layers:
        - {type: Inner, out: $width}
        - {type: Inner, out: $width * 2}
model:
  type: Sequential
  layers: [{type: Outer, width: 4}, {type: Outer, width: 3}]
"""
    m = specnet.build(spec)
    widths = [layer.out_features for layer in m.modules() if isinstance(layer, nn.Linear)]
    assert widths == [4, 8, 3, 6]


def test_every_use_of_a_block_reports_its_own_errors() -> None:
    spec = """\
input: [8]
blocks:
  Bad:
    params: {p: float}
    body: {type: Dropout, p: $p}
model:
  type: Sequential
  layers: [{type: Bad, p: 1.5}, {type: Bad, p: 2.5}]
"""
    got = errors(spec)
    assert [e.split(":")[0:2] for e in got] == [["8", "27"], ["8", "48"]]
    assert "1.5" in got[0] and "2.5" in got[1]


def test_repeat_binds_index_for_each_copy() -> None:
    spec = """\
input: [4]
model:
  type: Sequential
  layers:
    - {type: Linear, out_features: 8 + $index, repeat: 3}
"""
    m = specnet.build(spec)
    assert [layer.out_features for layer in m] == [8, 9, 10]
    assert [layer.in_features for layer in m] == [4, 8, 9]


def test_a_table_makes_one_copy_per_row() -> None:
    spec = """\
input: [3, 32, 32]
model:
  type: Sequential
  layers:
    - type: Conv2d
      kernel_size: 3
      padding: 1
      for: [{out_channels: 8}, {out_channels: 16, stride: 2}, {out_channels: 32, stride: 2}]
"""
    m = specnet.build(spec)
    assert [(c.out_channels, c.stride) for c in m] == [(8, (1, 1)), (16, (2, 2)), (32, (2, 2))]


def test_names_with_parts_place_copies_side_by_side() -> None:
    spec = """\
input: [4]
model:
  type: Sequential
  layers:
    stem: {type: Linear, out_features: 4}
    denselayer{$index + 1}: {type: Linear, out_features: 4, repeat: 3}
    encoder_layer_{$index}: {type: Linear, out_features: 4, repeat: 2}
    head: {type: Linear, out_features: 2}
"""
    m = specnet.build(spec)
    assert [n for n, _ in m.named_children()] == [
        "stem",
        *("denselayer1", "denselayer2", "denselayer3"),
        *("encoder_layer_0", "encoder_layer_1"),
        "head",
    ]


def test_splice_puts_a_blocks_layers_into_the_parent_numbering() -> None:
    # torchvision's VGG: features.0 .. features.N from stage blocks
    spec = """\
input: [3, 32, 32]
blocks:
  Stage:
    params: {width: int, convs: int}
    body:
      type: Sequential
      layers:
        - {type: Conv2d, out_channels: $width, kernel_size: 3, padding: 1, repeat: $convs}
        - {type: MaxPool2d, kernel_size: 2}
model:
  type: Sequential
  layers:
    features:
      type: Sequential
      layers:
        - {type: Stage, splice: true, for: [{width: 8, convs: 1}, {width: 16, convs: 2}]}
"""
    m = specnet.build(spec)
    features = m.features
    kinds = [type(layer).__name__ for layer in features]
    assert kinds == ["Conv2d", "MaxPool2d", "Conv2d", "Conv2d", "MaxPool2d"]
    assert names(m)[0] == "features.0.weight"
    assert "features.3.weight" in names(m)


def test_if_leaves_a_layer_out_and_a_graph_node_stands_for_its_input() -> None:
    spec = """\
input: [4, 8, 8]
blocks:
  Block:
    params: {planes: int, stride: 1}
    body:
      type: Graph
      nodes:
        conv: {type: Conv2d, out_channels: $planes, kernel_size: 3, stride: $stride, padding: 1}
        downsample:
          type: Conv2d
          input: input
          if: $stride != 1 or $planes != 4
          out_channels: $planes
          kernel_size: 1
          stride: $stride
        add: {type: Add, input: [conv, downsample]}
        extra: {type: ReLU, if: false}
      output: extra
model:
  type: Sequential
  layers: [{type: Block, planes: 4}, {type: Block, planes: 8, stride: 2}]
"""
    m = specnet.build(spec)
    first, second = m
    assert not hasattr(first, "downsample") and not hasattr(first, "extra")
    assert isinstance(second.downsample, nn.Conv2d)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        y = first(x)
        torch.testing.assert_close(y, first.conv(x) + x)
        assert m(x).shape == (2, 8, 4, 4)


FAMILY = """\
input: [3, 16, 16]
params: {width: 1.0, depths: list, head: 10}
variants:
  tiny: {depths: [1, 1]}
  small: {depths: [2, 3], width: 2.0}
model:
  type: Sequential
  layers:
    stem: {type: Conv2d, out_channels: int(8 * $width), kernel_size: 3, padding: 1}
    stage{$index + 1}:
      type: Sequential
      for: [{d: "$depths[0]", w: 8}, {d: "$depths[1]", w: 16}]
      layers:
        - {type: Conv2d, out_channels: int($w * $width), kernel_size: 3, padding: 1, repeat: $d}
    pool: {type: AdaptiveAvgPool2d, output_size: 1}
    flat: Flatten
    fc: {type: Linear, out_features: $head}
"""


def test_variants_of_one_spec() -> None:
    tiny = specnet.build(FAMILY, variant="tiny")
    small = specnet.build(FAMILY, variant="small")
    assert [n for n, _ in tiny.named_children()][:3] == ["stem", "stage1", "stage2"]
    assert len(tiny.stage2) == 1 and len(small.stage2) == 3
    assert small.stem.out_channels == 16 and tiny.stem.out_channels == 8
    assert small.stage2[0].out_channels == 32
    assert specnet.load(FAMILY, variant="small").variant == "small"
    assert specnet.load(FAMILY, variant="small").variants == ["tiny", "small"]


def test_a_variant_is_required_where_a_parameter_has_no_default() -> None:
    [err] = errors(FAMILY)
    assert err.startswith("2:30: params.depths: model parameter 'depths' has no default")
    assert "tiny, small" in err
    [err] = errors(FAMILY, variant="smal")
    assert "unknown variant 'smal'" in err and "did you mean 'small'" in err


def test_variant_values_are_checked_against_the_params() -> None:
    text = FAMILY.replace("tiny: {depths: [1, 1]}", "tiny: {depths: 3, wdth: 2}")
    got = errors(text, variant="tiny")
    assert sorted(got) == [
        "4:18: variants.tiny.depths: expected list of any value, got 3",
        "4:21: variants.tiny.wdth: unknown parameter 'wdth' (the spec's 'params' are width, "
        "depths, head); did you mean 'width'?",
    ]


def test_validate_checks_every_variant() -> None:
    text = FAMILY.replace("small: {depths: [2, 3], width: 2.0}", "small: {depths: [2], width: 2.0}")
    assert specnet.validate(text, variant="tiny") == []
    [err] = specnet.validate(text)
    assert "index 1 is outside a list of 1" in err and "in variant 'small'" in err


def test_the_cli_takes_a_variant(tmp_path: Path) -> None:
    path = tmp_path / "family.yaml"
    path.write_text(FAMILY, "utf-8")
    run = [sys.executable, "-m", "specnet"]
    out = subprocess.run(
        [*run, "summary", str(path), "--variant", "small"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    small_params = sum(p.numel() for p in specnet.build(FAMILY, variant="small").parameters())
    assert f"Parameters: {small_params:,}" in out.stdout
    out = subprocess.run([*run, "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(
        [*run, "export", str(path), "--variant", "nope"], capture_output=True, text=True
    )
    assert out.returncode == 1 and "unknown variant 'nope'" in out.stderr


def test_set_changes_a_model_parameter(tmp_path: Path) -> None:
    from specnet._front.overrides import load_with_overrides

    path = tmp_path / "family.yaml"
    path.write_text(FAMILY + "variant: tiny\n", "utf-8")
    spec = load_with_overrides(path, ["params.head=3"])
    assert specnet.build(spec).fc.out_features == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: Linear, out_features: $index + 1}]}\n",
            [
                "2:65: model.layers[0].out_features: '$index' is the copy's number inside a node "
                "with 'repeat' or 'for'"
            ],
        ),
        (
            "input: [4]\nmodel: {type: Linear, out_features: $width * 2}\n",
            ["2:37: model.out_features: unknown parameter '$width'"],
        ),
        (
            "input: [4]\nparams: {w: 2}\nmodel: {type: Linear, out_features: $w // 0}\n",
            ["3:37: model.out_features: division by zero in '$w // 0' (in '$w // 0')"],
        ),
        (
            "input: [4]\nparams: {w: 2}\nmodel: {type: Linear, out_features: $w +* 2}\n",
            ["3:37: model.out_features: cannot read this expression (in '$w +* 2')"],
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, repeat: 2, for: [{}]}]}\n",
            ["2:60: model.layers[0].for: a node has either 'repeat' or 'for', not both"],
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, for: [{repeat: 2}]}]}\n",
            [
                "2:56: model.layers[0].for[0].repeat: 'repeat' is a node key; a table row gives "
                "arguments (and 'if')"
            ],
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, for: 3}]}\n",
            ["2:54: model.layers[0].for: 'for' is a table: a list of mappings of arguments, got 3"],
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, if: 1}]}\n",
            ["2:53: model.layers[0].if: 'if' must be true or false, got 1"],
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, splice: true}]}\n",
            [
                "2:57: model.layers[0].splice: 'splice' puts a Sequential's layers into its "
                "parent; this is a ReLU"
            ],
        ),
        (
            "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    a{$index % 2}: {type: ReLU, repeat: 3}\n",
            ["5:20: model.layers.a{$index % 2}: two layers are named 'a0'"],
        ),
        (
            "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    a{$index / 2}: {type: ReLU, repeat: 2}\n",
            [
                "5:5: model.layers.a{$index / 2}: a name's {...} part must give a whole number or "
                "a word, got 0.0"
            ],
        ),
        (
            "input: [4]\nmodel: {type: ReLU, if: false}\n",
            ["2:21: model.if: 'if' is for the children of a container, not the model itself"],
        ),
        (
            "input: [4]\nvariant: a\nmodel: ReLU\n",
            ["2:10: variant: this spec has no 'variants' to choose from"],
        ),
    ],
)
def test_mistakes_are_located(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_unrolling_is_bounded() -> None:
    huge = "input: [4]\nparams: {n: 1000000000}\nmodel:\n  type: Sequential\n  layers:\n    - {type: ReLU, repeat: $n}\n"
    [err] = errors(huge)
    assert "more than 100000 layers" in err
    each = "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    - {type: Linear, out_features: $index + 1, repeat: 99999}\n"
    with pytest.raises(SpecError):  # every copy its own: bounded by the values unrolled
        specnet.load(each.replace("99999", "100001"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (  # a learned tensor has no input to stand for it
            "input: [4]\nmodel:\n  type: Graph\n  nodes:\n    p: {type: Parameter, shape: [4], if: false}\n"
            "    x: {type: Add, input: [input, p]}\n",
            "model.nodes.p.if: 'p' has no input to stand for it",
        ),
        (
            "input: [4]\nblocks: {A: {body: {type: Linear, out_features: 4, repeat: 3}}}\n"
            "model: {type: Sequential, layers: [A, ReLU]}\n",
            "blocks.A.body.repeat: 'repeat' is for the children of a container, not a block's body",
        ),
        (
            "input: [4]\nmodel:\n  type: ModuleList\n  layers: [{type: Linear, out_features: 4}]\n"
            "  between: {type: ReLU, if: false}\n",
            "model.between.if: 'if' is for the children of a container, not 'between'",
        ),
        (
            "input: [4]\nmodel:\n  type: Sequential\n  layers:\n    \"training{''}\": {type: ReLU, repeat: 1}\n",
            "'training' is already an attribute of the built nn.Sequential",
        ),
        (
            "input: [4]\nmodel: {type: Sequential, layers: [{type: ReLU, if: null}]}\n",
            "'if' must be true or false, got null",
        ),
    ],
)
def test_what_would_be_ignored_or_fail_later_is_refused(text: str, fragment: str) -> None:
    [err] = errors(text)
    assert fragment in err


def test_validate_checks_the_defaults_beside_the_variants() -> None:
    text = "input: [4]\nparams: {w: 0}\nvariants:\n  a: {w: 4}\nmodel: {type: Linear, out_features: $w}\n"
    [err] = specnet.validate(text)
    assert "got 0" in err and "[in the defaults (no variant)]" in err
    assert specnet.validate(text, variant="a") == []
    # an error common to every variant is reported once, without a note
    common = "input: [4]\nparams: {w: 4}\nvariants: {a: {}, b: {w: 2}}\nmodel: {type: Linear, out_features: $w, bias: 3}\n"
    [err] = specnet.validate(common)
    assert "bias" in err and "variant" not in err
