"""The model zoo: each spec in examples/zoo/ reproduces its source model exactly.

Same state_dict keys (in order) and shapes, so the source's checkpoints load with
``strict=True``, the same parameter count, and the same outputs in eval mode given the same
(random) weights. Large variants are compared on the meta device. The table is tests/_zoo.py.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from _zoo import (
    CASES,
    EXAMPLES,
    Case,
    assert_same_layout,
    assert_same_outputs,
    build,
    paired,
    python_lines,
    source,
    spec_lines,
    torchvision_model,
)

SPECS = sorted({c.path for c in CASES})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reproduces_its_source(case: Case) -> None:
    if case.how == "meta":
        assert_same_layout(build(case, "meta"), source(case, "meta"))
        return
    ours, theirs = paired(case)  # load_state_dict(strict=True) of the source's weights
    assert_same_layout(ours, theirs)
    assert_same_outputs(case, ours, theirs)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_is_shorter_than_the_python_it_replaces(path: Path) -> None:
    (code,) = {c.code for c in CASES if c.path == path}
    assert code is not None
    assert spec_lines(path) < python_lines(*code)


def test_every_zoo_spec_is_in_the_table() -> None:
    assert sorted((EXAMPLES / "zoo").glob("*.yaml")) == SPECS


def test_the_harness_catches_a_different_model() -> None:
    """A spec that differs from its source in one place fails each comparison it can fail."""
    resnet18 = Case("resnet18.yaml", None, partial(torchvision_model, "resnet18"), (1, 3, 64, 64))
    ours, theirs = paired(resnet18)
    assert_same_layout(ours, theirs)
    assert_same_outputs(resnet18, ours, theirs)
    theirs.layer1[0].conv2.padding = (2, 2)  # type: ignore[index, union-attr]
    theirs.layer1[0].conv1.padding = (0, 0)  # type: ignore[index, union-attr]
    with pytest.raises(AssertionError):
        assert_same_outputs(resnet18, ours, theirs)
    del theirs.fc
    with pytest.raises(AssertionError, match="missing"):
        assert_same_layout(ours, theirs)


def test_python_lines_count_code_only() -> None:
    # conv1x1: def, a one-line docstring, return
    assert python_lines("torchvision.models.resnet", ["conv1x1"]) == 2
    with pytest.raises(LookupError):
        python_lines("torchvision.models.resnet", ["NoSuchThing"])
