"""An ``Add`` writes into its first input only where hand-written code may (``out += identity``
after a BatchNorm), and gives exactly what the out-of-place sum gives, gradients included."""

from __future__ import annotations

import pytest
import torch

import specnet


def graph(first: str, extra: str = "", add: str = "[first, input]") -> str:
    return f"""\
input: [4, 6, 6]
model:
  type: Graph
  nodes:
    conv: {{type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}}
    first: {first}
{extra}    add: {{type: Add, input: {add}}}
    out: ReLU
"""


@pytest.mark.parametrize(
    ("first", "extra", "add", "in_place"),
    [
        ("BatchNorm2d", "", "[first, input]", True),
        ("{type: Conv2d, out_channels: 4, kernel_size: 1}", "", "[first, input]", True),
        # a ReLU's backward reads its output: writing into it would corrupt the gradient
        ("ReLU", "", "[first, input]", False),
        # the first input is read again later
        ("BatchNorm2d", "    again: {type: Mul, input: [first, first]}\n", "[first, again]", False),
        # the graph's input belongs to the caller
        ("BatchNorm2d", "", "[input, first]", False),
        # broadcasting over the first input makes a larger tensor
        ("{type: Conv2d, out_channels: 1, kernel_size: 1}", "", "[first, input]", False),
    ],
)
def test_add_in_place_only_where_safe(first: str, extra: str, add: str, in_place: bool) -> None:
    spec = graph(first, extra, add)
    model = specnet.build(spec).double()
    code = model.code
    assert ("+=" in code) == in_place, code
    reference = specnet.build(spec).double()
    reference.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = model(x)
    # the same computation written out of place, by hand
    nodes = dict(reference.named_children())
    c = nodes["conv"](x_ref)
    f = nodes["first"](c)
    operands = {"first": f, "input": x_ref}
    if "again" in spec:
        operands["again"] = f * f
    a, b = (operands[n.strip()] for n in add.strip("[]").split(","))
    expected = torch.relu(a + b)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    assert x.grad is not None and x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), (_, q) in zip(
        model.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_resnet_blocks_add_in_place_like_torchvision() -> None:
    model = specnet.build("examples/resnet18.yaml")
    block = model.layer1[0]
    assert "x += input" in block.code
    assert "bn2 += x" in model.layer2[0].code  # x: the downsampled shortcut
