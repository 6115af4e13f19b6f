"""A registered layer is described like torch's own and goes through the same stages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import specnet
from specnet._front.registry import layers
from specnet._front.schema import build_schema


class GatedLinear(nn.Module):
    """out = linear(x) * sigmoid(gate(x))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias)
        self.gate = nn.Linear(in_features, out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * torch.sigmoid(self.gate(x))


def gated_shape(args: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    args["in_features"] = shape[-1]
    return (*shape[:-1], args["out_features"])


@pytest.fixture
def gated() -> Iterator[None]:
    specnet.register(GatedLinear, infers=("in_features",), shape=gated_shape)
    try:
        yield
    finally:
        layers().remove("GatedLinear")


SPEC = """\
input: [3, 8]
model:
  type: Sequential
  layers:
    - {type: GatedLinear, out_features: 5}
    - {type: Linear, out_features: 2}
"""


def test_a_registered_layer_with_an_inferred_argument_validates_and_builds(gated: None) -> None:
    assert specnet.validate(SPEC) == []
    model = specnet.build(SPEC)
    assert isinstance(model[0], GatedLinear)
    assert model[0].linear.in_features == 8  # inferred, and given to the constructor
    assert model(torch.randn(4, 3, 8)).shape == (4, 3, 2)
    assert specnet.summary(SPEC).rows[1].output == "[3, 5]"


def test_a_registered_layers_inferred_argument_is_checked_when_given(gated: None) -> None:
    wrong = SPEC.replace("out_features: 5}", "out_features: 5, in_features: 7}")
    (error,) = specnet.validate(wrong)
    assert error.startswith("<spec>:5:")
    assert "in_features is 7 but the input gives 8" in error


def test_a_registered_layers_arguments_are_in_the_schema(gated: None) -> None:
    definition = build_schema()["definitions"]["layer.GatedLinear"]
    assert set(definition["properties"]) >= {"in_features", "out_features", "bias"}
    assert "in_features" not in definition["required"]


def test_a_registered_layer_without_a_shape_rule_is_a_located_error() -> None:
    specnet.register(GatedLinear)
    try:
        (error,) = specnet.validate(
            SPEC.replace("out_features: 5}", "in_features: 8, out_features: 5}")
        )
        assert error.startswith("<spec>:5:") and "GatedLinear has no shape rule" in error
    finally:
        layers().remove("GatedLinear")


def test_infers_needs_a_shape_function() -> None:
    with pytest.raises(ValueError, match="shape function"):
        specnet.register(GatedLinear, infers=("in_features",))
    assert "GatedLinear" not in layers()


def test_list_layers_names_torch_layers_ops_and_registered_ones(gated: None) -> None:
    names = specnet.list_layers()
    assert {"Conv2d", "Add", "GatedLinear"} <= set(names)
    assert names == sorted(names)


class Scaled(nn.Module):
    """A layer whose constructor checks what no description says."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        if scale == 3.0:
            raise ValueError("scale 3 is reserved")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_validate_with_build_reports_what_only_the_constructor_knows() -> None:
    specnet.register(Scaled, shape=lambda args, shape: shape)
    try:
        spec = "input: [4]\nmodel: {type: Scaled, scale: 3.0}\n"
        assert specnet.validate(spec) == []
        (error,) = specnet.validate(spec, build=True)
        assert error.startswith("<spec>:2:8: model: ")
        assert "Scaled refused these arguments: scale 3 is reserved" in error
    finally:
        layers().remove("Scaled")


def test_the_validate_command_builds_on_request(tmp_path: Path) -> None:
    from specnet._cli.main import main

    spec = tmp_path / "net.yaml"
    spec.write_text("input: [3, 8, 8]\nmodel: {type: Conv2d, out_channels: 4, kernel_size: 3}\n")
    assert main(["validate", "--build", "-q", str(spec)]) == 0
    spec.write_text("input: [3, 8, 8]\nmodel: {type: Conv2d, out_channels: 4, kernel_size: 9}\n")
    assert main(["validate", "--build", "-q", str(spec)]) == 1
