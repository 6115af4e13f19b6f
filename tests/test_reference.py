"""The generated reference (docs/reference.md): up to date, and true to the registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from specnet._front.registry import (
    CONTAINERS,
    Param,
    TypeDef,
    layers,
    losses,
    optimizers,
    schedulers,
)
from specnet._front.spec import DTYPES
from specnet._front.trainspec import METRICS, TrainSpec, datasets, transforms
from tools import reference

ROOT = Path(__file__).resolve().parent.parent
STALE = "docs/reference.md is stale: run python -m tools.reference"

_CELL = re.compile(r"(?<!\\)\|")


@cache
def page() -> str:
    return reference.render()


def section(heading: str) -> str:
    """The text under the heading line ``heading`` (``"### Synthetic"``), up to the next
    heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = page().splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def cells(row: str) -> list[str]:
    """A table row's cells, split at the ``|`` that are not escaped."""
    return [c.strip() for c in _CELL.split(row.strip())[1:-1]]


def rows(text: str) -> dict[str, list[str]]:
    """The rows of the tables in ``text`` by their first cell (``in_features``, without
    its backticks)."""
    out: dict[str, list[str]] = {}
    lines = text.splitlines()
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith("| ") and not line.startswith("| ---") and not after.startswith("| ---"):
            row = cells(line)
            out.setdefault(row[0].strip("`"), row)
    return out


def shown(value: object) -> str:
    """A default as the page writes it."""
    return f"`{json.dumps(value)}`"


def test_committed_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text("utf-8")
    assert committed == page(), STALE


def test_check_exits_1_with_the_command_when_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "reference.md"
    target.write_text(page() + "an edit by hand\n", encoding="utf-8")
    assert reference.main(["--check"], target) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is stale: run python -m tools.reference" in err
    assert reference.main([], target) == 0
    assert target.read_text("utf-8") == page()
    assert reference.main(["--check"], target) == 0
    target.unlink()
    assert reference.main(["--check"], target) == 1


def test_the_generator_never_imports_torch() -> None:
    code = (
        "import sys, tools.reference as r; r.render(); "
        "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _headings(level: int) -> set[str]:
    marks = "#" * level + " "
    return {line.removeprefix(marks) for line in page().splitlines() if line.startswith(marks)}


def test_every_type_has_a_heading() -> None:
    built_in = {n for n, t in layers().items() if t.kind in ("layer", "op")}
    assert built_in <= _headings(4)
    assert {"Conv2d", "Linear", "MultiheadAttention", "Add", "Parameter"} <= built_in
    for registry in (CONTAINERS, losses(), optimizers(), schedulers(), datasets(), transforms()):
        assert set(registry) <= _headings(3), registry


def test_layers_are_grouped_by_their_family() -> None:
    assert "#### Conv2d" in section("### Convolutions and transposed convolutions")
    assert "#### MaxPool2d" in section("### Pooling")
    assert "#### Concat" in section("### Layers combining several inputs, and reductions")


def test_a_registered_layer_is_not_listed() -> None:
    custom = TypeDef("NotSpecnets", "custom", (Param("width", "int"),), "A program's layer.")
    layers().add(custom)
    try:
        assert "NotSpecnets" not in reference.render()
    finally:
        layers().remove("NotSpecnets")


@pytest.mark.parametrize("name", sorted(datasets()))
def test_every_data_set_argument_is_listed_with_its_default(name: str) -> None:
    table = rows(section(f"### {name}"))
    t = datasets()[name]
    assert set(table) == {p.name for p in t.params}
    for p in t.params:
        assert table[p.name][2] == ("required" if p.required else shown(p.default)), p.name


def test_synthetic_lists_samples_and_classes() -> None:
    table = rows(section("### Synthetic"))
    assert table["samples"][1:3] == ["int >= 1", "`1024`"]
    assert table["classes"][1:3] == ["int >= 1 or null", "`10`"]


def test_required_and_inferred_arguments_are_said() -> None:
    linear = rows(section("#### Linear"))
    assert linear["in_features"][2] == "inferred from the input"
    assert linear["out_features"][2] == "required"
    assert linear["bias"][2] == "`true`"
    assert rows(section("### TensorFile"))["path"][2] == "required"
    assert rows(section("#### Conv2d"))["in_channels"][2] == "inferred from the input"


def test_ranges_are_part_of_the_type() -> None:
    assert rows(section("#### Dropout"))["p"][1] == "float in [0, 1]"
    assert rows(section("#### Conv2d"))["out_channels"][1] == "int >= 1"
    assert rows(section("### StepLR"))["step_size"][1] == "int >= 1"
    assert rows(section("### SGD"))["lr"][1] == "float >= 0"


def test_torch_defaults_are_said_once() -> None:
    """torch's "Default: ..." is cut from its docs (the default column says it), while
    specnet's own "Default: the last node" stays whole."""
    assert "Default:" not in rows(section("#### Conv2d"))["stride"][3]
    assert rows(section("### Graph"))["output"][3].endswith("Default: the last node.")


def test_every_table_row_has_its_header_s_cells() -> None:
    """A ``|`` in a doc (GELU's 'none' | 'tanh') is escaped, so no cell splits in two."""
    width = 0
    for line in page().splitlines():
        if not line.startswith("|"):
            width = 0
            continue
        n = len(cells(line))
        width = width or n
        assert n == width, line
    assert r"'none' \| 'tanh'" in rows(section("#### GELU"))["approximate"][3]


def test_every_dtype_is_listed() -> None:
    table = rows(section("## Dtypes"))
    assert set(DTYPES) <= set(table)
    assert table["int64"][1:] == ["`torch.int64`", "integer"]


def test_every_metric_is_listed() -> None:
    table = rows(section("## Metrics"))
    for name, metric in METRICS.items():
        assert table[name][1] == metric.doc


def test_every_train_key_is_listed_with_its_default() -> None:
    table = rows(section("## The `train:` section"))
    assert list(table) == list(TrainSpec.model_fields)
    assert table["batch_size"][1:3] == ["int >= 1", "`64`"]
    assert table["loss"][2] == '`"CrossEntropyLoss"`'
    assert table["optimizer"][2] == '`{"type": "Adam", "lr": 0.001}`'
    assert table["clip_grad_norm"][1:3] == ["float > 0 or null", "`null`"]
    assert "[Data sets](#data-sets)" in table["data"][1]


def test_schedules_say_when_they_step() -> None:
    assert "after every optimizer step" in section("### OneCycleLR")
    assert "with the validation loss" in section("### ReduceLROnPlateau")
    assert "once an epoch, after validation" in section("### StepLR")


def test_forward_keywords_are_listed() -> None:
    table = rows(section("#### MultiheadAttention"))
    assert table["attn_mask"][1] == "a graph node's name (a tensor), or null"
    assert table["need_weights"][1:3] == ["bool", "`true`"]


def test_contents_link_to_headings() -> None:
    """Each link of the contents is a heading's anchor, as GitHub makes them (lower case,
    punctuation dropped, spaces as '-'; no heading here repeats another)."""
    anchors = {
        "#" + re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
        for n in (2, 3, 4)
        for h in _headings(n)
    }
    contents = section("## Contents")
    links = re.findall(r"\]\((#[^)]+)\)", contents)
    assert set(links) <= anchors
    assert "[Conv2d](#conv2d)" in contents and "[Synthetic](#synthetic)" in contents
