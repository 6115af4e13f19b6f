"""Built containers: torch's classes and spec names, every child called as torch calls it.

Each container kind is built from the same chain of layers and checked against
those modules run by a plain ``nn.Sequential``: same results, and every hook,
tracer, compiler and copy sees each child call.
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import torch
from torch import nn

import specnet

ROOT = Path(__file__).resolve().parent.parent
SEQUENTIAL = """\
input: [6]
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: 8}
    act: Tanh
    fc2: {type: Linear, out_features: 3}
"""
MODULE_LIST = """\
input: [6]
model:
  type: ModuleList
  layers:
    - {type: Linear, out_features: 8}
    - {type: Linear, out_features: 3}
"""
MODULE_DICT = SEQUENTIAL.replace("Sequential", "ModuleDict")
GRAPH = SEQUENTIAL.replace("Sequential", "Graph").replace("layers:", "nodes:")
SPECS = {
    "Sequential": SEQUENTIAL,
    "ModuleList": MODULE_LIST,
    "between": MODULE_LIST + "  between: Tanh\n",
    "ModuleDict": MODULE_DICT,
    "Graph": GRAPH,
}
CALLS = {
    "Sequential": ["fc1", "act", "fc2"],
    "ModuleList": ["layers.0", "layers.1"],
    "between": ["layers.0", "between", "layers.1", "between"],
    "ModuleDict": ["layers.fc1", "layers.act", "layers.fc2"],
    "Graph": ["fc1", "act", "fc2"],
}
"""The submodules each model calls, in order."""


def reference(model: nn.Module, name: str) -> nn.Module:
    """The same modules (hooks included) run by torch's own nn.Sequential."""
    return nn.Sequential(*(model.get_submodule(path) for path in CALLS[name]))


@pytest.fixture(params=sorted(SPECS))
def name(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return specnet.build(SPECS[name])


def test_same_results_as_torch_containers(model: nn.Module, name: str) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    ref = reference(model, name)
    out = model(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, ref(x), rtol=0, atol=0)
    torch.testing.assert_close(grad, torch.autograd.grad(ref(x).sum(), x)[0], rtol=0, atol=0)


HOLDERS: dict[str, tuple[str, type[nn.Module]]] = {
    "Sequential": ("", nn.Sequential),
    "ModuleList": ("layers", nn.ModuleList),
    "between": ("layers", nn.ModuleList),
    "ModuleDict": ("layers", nn.ModuleDict),
}
"""Where the children sit, and torch's class holding them (a Graph holds them itself)."""


def test_torch_classes_and_the_spec_names(model: nn.Module, name: str) -> None:
    path, cls = HOLDERS.get(name, ("", type(model)))
    assert type(model.get_submodule(path)) is cls  # not a subclass
    linear = [p for p in CALLS[name] if isinstance(model.get_submodule(p), nn.Linear)]
    assert list(model.state_dict()) == [f"{p}.{k}" for p in linear for k in ("weight", "bias")]


def test_nested_sequentials_are_nn_sequential() -> None:
    model = specnet.build(ROOT / "examples" / "resnet18.yaml", device="meta")
    sequentials = [m for m in model.modules() if isinstance(m, nn.Sequential)]
    assert len(sequentials) == 1 + 4 + 3  # the model, layer1..4, three downsamples
    assert all(type(m) is nn.Sequential for m in sequentials)


def test_every_child_is_called_through_module_call(model: nn.Module, name: str) -> None:
    """What fx, profilers and other tools that wrap ``Module.__call__`` rely on."""
    paths = {module: path for path, module in model.named_modules()}
    called: list[str] = []
    handle = nn.modules.module.register_module_forward_pre_hook(
        lambda module, _args: called.append(paths[module])
    )
    try:
        model(torch.randn(2, 6))
    finally:
        handle.remove()
    assert called == ["", *CALLS[name]]


def test_children_are_called_through_module_call_with_nothing_observing(
    model: nn.Module, name: str
) -> None:
    """No shortcut to ``forward`` when no hook or tracer is there to notice."""
    seen: list[nn.Module] = []
    code = nn.Module._call_impl.__code__  # what every Module.__call__ runs

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            seen.append(frame.f_locals["self"])

    sys.setprofile(profile)
    try:
        model(torch.randn(2, 6))
    finally:
        sys.setprofile(None)
    assert seen == [model, *(model.get_submodule(p) for p in CALLS[name])]


HookSetup = Callable[[nn.Module, list[str]], Any]
LOCAL_HOOKS: dict[str, HookSetup] = {
    "forward": lambda m, log: m.register_forward_hook(lambda *_: log.append("forward")),
    "forward_pre": lambda m, log: m.register_forward_pre_hook(lambda *_: log.append("pre")),
    "forward_pre_kwargs": lambda m, log: m.register_forward_pre_hook(
        lambda *_: log.append("pre_kwargs"), with_kwargs=True
    ),
    "forward_kwargs": lambda m, log: m.register_forward_hook(
        lambda *_: log.append("forward_kwargs"), with_kwargs=True
    ),
    "forward_always": lambda m, log: m.register_forward_hook(
        lambda *_: log.append("forward_always"), always_call=True
    ),
    "full_backward": lambda m, log: m.register_full_backward_hook(
        lambda *_: log.append("backward")
    ),
    "backward_pre": lambda m, log: m.register_full_backward_pre_hook(
        lambda *_: log.append("backward_pre")
    ),
}
GLOBAL_HOOKS: dict[str, HookSetup] = {
    "global_forward": lambda _, log: nn.modules.module.register_module_forward_hook(
        lambda *_: log.append("forward")
    ),
    "global_forward_pre": lambda _, log: nn.modules.module.register_module_forward_pre_hook(
        lambda *_: log.append("pre")
    ),
    "global_full_backward": lambda _, log: nn.modules.module.register_module_full_backward_hook(
        lambda *_: log.append("backward")
    ),
}


@pytest.mark.parametrize("kind", sorted(LOCAL_HOOKS) + sorted(GLOBAL_HOOKS))
def test_every_kind_of_hook_runs_as_in_torch_containers(
    model: nn.Module, name: str, kind: str
) -> None:
    """A hook on a child (or a global one) runs as it does under nn.Sequential."""
    log: list[str] = []
    if kind in LOCAL_HOOKS:
        handle = LOCAL_HOOKS[kind](model.get_submodule(CALLS[name][-1]), log)
    else:
        handle = GLOBAL_HOOKS[kind](model, log)
    x = torch.randn(2, 6, requires_grad=True)
    try:
        model(x).sum().backward()
        ours = list(log)
        log.clear()
        reference(model, name)(x).sum().backward()
    finally:
        handle.remove()
    assert ours, f"the {kind} hook never ran"
    assert ours == log  # a global hook: once for the container, once per child call


def test_a_hook_that_changes_the_output_is_applied() -> None:
    model = specnet.build(SEQUENTIAL)
    x = torch.randn(2, 6)
    plain = model(x)
    handle = model.act.register_forward_hook(lambda _m, _i, out: out * 0)
    try:
        torch.testing.assert_close(model(x), model.fc2.bias.expand(2, 3))
    finally:
        handle.remove()
    torch.testing.assert_close(model(x), plain)


def test_a_child_compiled_with_module_compile_runs_compiled(model: nn.Module, name: str) -> None:
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, _inputs: Any) -> Callable[..., Any]:
        graphs.append(gm)
        return gm.forward

    model.get_submodule(CALLS[name][-1]).compile(backend=backend)
    x = torch.randn(2, 6)
    torch.testing.assert_close(model(x), reference(model, name)(x))
    assert graphs, "the child's compiled call was bypassed"


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
def test_tracers_see_every_child(model: nn.Module, name: str) -> None:
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == CALLS[name]
    x = torch.randn(2, 6)
    jit_traced = torch.jit.trace(model, x)
    calls = [n for n in jit_traced.graph.nodes() if n.kind() == "prim::CallMethod"]
    assert len(calls) == len(CALLS[name])
    torch.testing.assert_close(jit_traced(x), model(x))


def test_torch_compile_sees_every_child(model: nn.Module, name: str) -> None:
    paths: set[str] = set()

    def backend(gm: torch.fx.GraphModule, _inputs: Any) -> Callable[..., Any]:
        for node in gm.graph.nodes:
            stack = node.meta.get("nn_module_stack", {}).values()
            paths.update(path.split(".", 1)[1] for path, _ in stack if "." in path)
        return gm.forward

    torch.compile(model, backend=backend)(torch.randn(2, 6))
    assert paths == set(CALLS[name])


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
def test_script_and_compile(model: nn.Module) -> None:
    model.eval()
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
        torch.testing.assert_close(torch.compile(model, backend="eager")(x), model(x))


def test_copies_keep_the_class(model: nn.Module) -> None:
    x = torch.randn(2, 6)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(clone) is type(model)
        torch.testing.assert_close(clone(x), model(x))


def test_a_meta_build_takes_a_checkpoint(model: nn.Module, name: str) -> None:
    meta = specnet.build(SPECS[name], device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    meta.load_state_dict(model.state_dict(), assign=True)
    x = torch.randn(2, 6)
    torch.testing.assert_close(meta(x), model(x))


@pytest.mark.parametrize(
    ("container", "name"),
    [("Sequential", "append"), ("Sequential", "training"), ("Graph", "code")],
)
def test_child_names_that_the_container_has_are_refused(container: str, name: str) -> None:
    key = "nodes" if container == "Graph" else "layers"
    text = (
        f"input: [4]\nmodel:\n  type: {container}\n  {key}:\n"
        f"    fc: {{type: Linear, out_features: 4}}\n    {name}: ReLU\n"
    )
    with pytest.raises(specnet.SpecValidationError) as info:
        specnet.build(text)
    (error,) = info.value.errors
    assert (error.line, error.col) == (6, 5)
    assert f"'{name}' is already an attribute" in error.msg
