"""Built Sequentials and ModuleLists: nn.Sequential's behaviour, with children called directly.

Their ``forward`` skips ``Module.__call__`` for a child only when nothing could
tell: every hook, ``Module.compile()``, tracer and scripting must still see each
call, and mutating the container must change what runs.
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest
import torch
from torch import nn

import specnet

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
MODULE_LIST_BETWEEN = MODULE_LIST + "  between: Tanh\n"
SPECS = {"Sequential": SEQUENTIAL, "ModuleList": MODULE_LIST, "between": MODULE_LIST_BETWEEN}


def reference(model: nn.Module) -> nn.Module:
    """The same modules in torch's own containers, called the usual way."""
    if isinstance(model, nn.Sequential):
        return nn.Sequential(OrderedDict(model.named_children()))
    layers = list(model.layers)
    if hasattr(model, "between"):
        mixed: list[nn.Module] = []
        for layer in layers:
            mixed += [layer, model.between]
        return nn.Sequential(*mixed)
    return nn.Sequential(*layers)


def children(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


@contextmanager
def counting_calls() -> Iterator[list[nn.Module]]:
    """Every module that goes through ``Module._call_impl``, as a profiler sees it."""
    seen: list[nn.Module] = []
    code = nn.Module._call_impl.__code__

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            seen.append(frame.f_locals["self"])

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


@pytest.fixture(params=sorted(SPECS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return specnet.build(SPECS[request.param])


def test_same_results_as_torch_containers(model: nn.Module) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    ref = reference(model)
    out = model(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, ref(x), rtol=0, atol=0)
    torch.testing.assert_close(grad, torch.autograd.grad(ref(x).sum(), x)[0], rtol=0, atol=0)


def test_children_skip_module_call_when_nothing_observes_it(model: nn.Module) -> None:
    x = torch.randn(2, 6)
    with counting_calls() as seen:
        model(x)
    assert seen == [model]  # the container itself; its children went straight to forward
    with counting_calls() as seen:
        reference(model)(x)
    assert len(seen) > 1  # what a plain nn.Sequential does


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
def test_every_kind_of_hook_runs_as_in_torch_containers(model: nn.Module, kind: str) -> None:
    """A hook on a child (or a global one) runs as it does under nn.Sequential."""
    log: list[str] = []
    if kind in LOCAL_HOOKS:
        handle = LOCAL_HOOKS[kind](children(model)[-1], log)
    else:
        handle = GLOBAL_HOOKS[kind](model, log)
    x = torch.randn(2, 6, requires_grad=True)
    try:
        model(x).sum().backward()
        ours = list(log)
        log.clear()
        reference(model)(x).sum().backward()  # the same child modules, hooks included
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
    torch.testing.assert_close(model(x), plain)  # removed: direct calls again


def test_a_child_compiled_with_module_compile_runs_compiled() -> None:
    model = specnet.build(SEQUENTIAL)
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, _inputs: Any) -> Callable[..., Any]:
        graphs.append(gm)
        return gm.forward

    model.fc2.compile(backend=backend)
    x = torch.randn(2, 6)
    torch.testing.assert_close(model(x), reference(model)(x))
    assert graphs, "fc2's compiled call was bypassed"


def test_a_child_with_its_own_call_is_called() -> None:
    class Doubling(nn.Identity):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    model = specnet.build(SEQUENTIAL)
    model.act = Doubling()
    x = torch.randn(2, 6)
    torch.testing.assert_close(model(x), model.fc2(2 * model.fc1(x)))


class Doubled(nn.Tanh):
    """A layer that changes its own call, not its forward."""

    def _call_impl(self, *args: Any, **kwargs: Any) -> Any:
        return 2 * super()._call_impl(*args, **kwargs)


def test_a_child_that_changes_its_call_impl_is_called_through_it() -> None:
    model = specnet.build(SEQUENTIAL)
    x = torch.randn(2, 6)
    model.act = Doubled()
    torch.testing.assert_close(model(x), model.fc2(2 * torch.tanh(model.fc1(x))))
    model.act = nn.Tanh()
    model.act._call_impl = lambda x: -x  # on the instance
    torch.testing.assert_close(model(x), model.fc2(-model.fc1(x)))


@pytest.mark.parametrize("method", ["__call__", "_call_impl"])
def test_a_patched_module_call_is_honoured(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Tools that wrap every module call (as torch.fx does while tracing) see the children."""
    model = specnet.build(SEQUENTIAL)
    original = getattr(nn.Module, method)
    called: list[str] = []

    def wrapped(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        called.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, method, wrapped)
    model(torch.randn(2, 6))
    assert called == ["Sequential", "Linear", "Tanh", "Linear"]


def test_the_input_keyword_of_nn_sequential() -> None:
    model = specnet.build(SEQUENTIAL)
    x = torch.randn(2, 6)
    torch.testing.assert_close(model(input=x), reference(model)(input=x))


def test_mutating_the_sequential_changes_what_runs() -> None:
    model = specnet.build(SEQUENTIAL)
    x = torch.randn(2, 6)
    model.append(nn.Softmax(dim=1))
    torch.testing.assert_close(model(x).sum(1), torch.ones(2))
    model.act = nn.Identity()  # replacing a child by name
    torch.testing.assert_close(model(x), torch.softmax(model.fc2(model.fc1(x)), 1))
    del model[-1]  # torch renumbers the children: 0, 1, 2
    torch.testing.assert_close(model(x), model[2](model[0](x)))
    head = model[:1]
    assert type(head) is type(model)
    torch.testing.assert_close(head(x), model[0](x))


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
def test_tracers_see_every_child() -> None:
    model = specnet.build(SEQUENTIAL).eval()
    traced = torch.fx.symbolic_trace(model)
    called = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert called == ["fc1", "act", "fc2"]
    x = torch.randn(2, 6)
    jit_traced = torch.jit.trace(model, x)
    assert all(f"self.{name}" in jit_traced.code for name in ("fc1", "act", "fc2"))
    torch.testing.assert_close(jit_traced(x), model(x))


def test_the_profiler_sees_every_child() -> None:
    model = specnet.build(SEQUENTIAL)
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu), counting_calls() as seen:
        model(torch.randn(2, 6))
    assert seen == [model, model.fc1, model.act, model.fc2]


def test_torch_compile_sees_every_child() -> None:
    model = specnet.build(SEQUENTIAL)
    stacks: list[str] = []

    def backend(gm: torch.fx.GraphModule, _inputs: Any) -> Callable[..., Any]:
        for node in gm.graph.nodes:
            stacks.extend(path for path, _ in node.meta.get("nn_module_stack", {}).values())
        return gm.forward

    torch.compile(model, backend=backend)(torch.randn(2, 6))
    assert {path.rsplit(".", 1)[-1] for path in stacks} == {"fc1", "act", "fc2"}


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
@pytest.mark.parametrize("name", sorted(SPECS))
def test_script_and_compile(name: str) -> None:
    model = specnet.build(SPECS[name]).eval()
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
        torch.testing.assert_close(torch.compile(model, backend="eager")(x), model(x))


def test_copies_keep_the_class() -> None:
    model = specnet.build(SEQUENTIAL)
    x = torch.randn(2, 6)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(clone) is type(model)
        torch.testing.assert_close(clone(x), model(x))


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
