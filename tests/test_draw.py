"""``specnet draw``: the picture Graphviz lays out, rendered by headless Chromium.

The SVG and the HTML page of the examples are opened in Chromium (Debian's package,
``--headless``); the tests read the DOM it builds (each layer's box and each edge's shape
label, the clusters of containers and block uses, the page's folding) and write a
screenshot among the test's artefacts (``$SPECNET_ARTEFACTS`` if set, else the test's
temporary folder).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import specnet
from specnet._cli.main import main
from specnet._front.errors import UsageError
from specnet._front.infer import infer
from specnet._front.layout import walk

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CHROMIUM_TIMEOUT = 180


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("chromium") or shutil.which("chromium-browser")
    assert program is not None, "Chromium is needed (scripts/system-packages installs it)"
    return subprocess.run(
        [
            program,
            "--headless",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
        check=True,
    )


def _dom(tmp: Path, url: str) -> str:
    return _chromium(tmp, "--virtual-time-budget=2000", "--dump-dom", url).stdout


def _texts(dom: str) -> list[str]:
    """The text of every SVG <text> element, as the browser holds it."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", dom)]


def _leaves(path: Path) -> list[str]:
    """The qualified names of the modules that are not containers."""
    plan = infer(specnet.load(path))
    containers = ("Sequential", "ModuleList", "ModuleDict", "Graph")
    return [name or "(model)" for name, _, step in walk(plan) if step.kind not in containers]


def _artefacts(tmp: Path) -> Path:
    folder = Path(os.environ.get("SPECNET_ARTEFACTS", tmp)) / "draw"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_resnet18_svg_shows_every_layer_shape_and_block(tmp_path: Path) -> None:
    out = tmp_path / "r.svg"
    assert main(["draw", str(REPO / "examples/resnet18.yaml"), "-o", str(out)]) == 0
    dom = _dom(tmp_path, out.as_uri())
    texts = _texts(dom)
    assert dom.count('class="node layer') == len(_leaves(REPO / "examples/resnet18.yaml")) == 69
    assert "conv1: Conv2d" in texts and "fc: Linear" in texts
    assert "out_channels=64, kernel_size=7, stride=2, padding=3, ..." in texts
    assert "9,408 params" in texts  # conv1: 64 * 3 * 7 * 7
    for shape in ("[3, 224, 224]", "[64, 112, 112]", "[64, 56, 56]", "[512, 7, 7]", "[1000]"):
        assert shape in texts, shape
    assert "layer1.0 · BasicBlock (block) · 73,984 params" in texts
    assert "layer2.0.downsample · Sequential · 8,448 params" in texts
    assert any(t.startswith("resnet18.yaml · 11,689,512 parameters") for t in texts)


def test_resnet18_html_works_offline_folds_blocks_and_has_details(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["draw", str(REPO / "examples/resnet18.yaml"), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    # Self-contained: nothing is fetched (the only URLs are XML namespaces).
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert {u for u in re.findall(r"https?://[^\s\"'<>)]+", page)} <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    unfolded = _dom(tmp_path, out.as_uri())
    assert not re.findall(r'class="[^"]*folded-away', unfolded)
    assert "conv1: Conv2d" in _texts(unfolded)
    folded = _dom(tmp_path, out.as_uri() + "#fold=blocks")
    covers = re.findall(r"▸ ([^<]*) \(([^,]*), folded\)", folded)
    assert sorted(covers) == sorted(
        [
            (
                f"layer{i}.{j}",
                "BasicBlock" if j else "DownsampleBasicBlock" if i > 1 else "BasicBlock",
            )
            for i in range(1, 5)
            for j in range(2)
        ]
    )
    hidden = re.findall(r'class="node layer[^"]*folded-away"', folded)
    in_blocks = [n for n in _leaves(REPO / "examples/resnet18.yaml") if n.startswith("layer")]
    assert len(hidden) == len(in_blocks) == 62  # all but the stem and the head
    shot = _artefacts(tmp_path) / "resnet18-folded.png"
    _chromium(
        tmp_path, "--window-size=1200,900", f"--screenshot={shot}", out.as_uri() + "#fold=blocks"
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)


def test_png_is_written_by_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "net.png"
    assert main(["draw", str(REPO / "examples/lenet.yaml"), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 200  # a column of boxes


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_draws_a_box_per_layer(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "net.svg"
    assert main(["draw", str(path), "-o", str(out)]) == 0
    svg = out.read_text(encoding="utf-8")
    # A box per call: a ModuleDict's forward may call one module twice.
    drawn = re.findall(r"module: ([^&\s]+)", svg)
    assert svg.count('class="node layer') == len(drawn)
    assert set(drawn) == set(_leaves(path))
    assert svg.count('class="node io"') == len(specnet.load(path).inputs) + 1


def test_a_spec_error_is_reported_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: [3, 8, 8]\nmodel: {type: Conv2d, out_channels: 4, kernel_size: 9}\n")
    out = tmp_path / "net.svg"
    assert main(["draw", str(spec), "-o", str(out)]) == 1
    assert f"{spec}:2:" in capsys.readouterr().out
    assert not out.exists()


def test_a_wrong_suffix_and_a_missing_graphviz_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lenet = str(REPO / "examples/lenet.yaml")
    assert main(["draw", lenet, "-o", str(tmp_path / "net.pdf")]) == 2
    assert "-o must end in .svg, .png or .html" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="Graphviz's dot"):
        from specnet._draw.render import render

        render("digraph {}", "svg")
    assert main(["draw", lenet, "-o", str(tmp_path / "net.svg")]) == 2
    assert "install Graphviz" in capsys.readouterr().err


def test_summary_can_draw_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lenet.svg"
    assert main(["summary", str(REPO / "examples/lenet.yaml"), "--draw", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Parameters: 81,194" in printed
    svg = out.read_text(encoding="utf-8")
    assert "81,194 parameters" in svg and svg.count('class="node layer') == len(
        _leaves(REPO / "examples/lenet.yaml")
    )


def test_every_residual_add_gets_both_its_edges() -> None:
    from specnet._build.summary import summarize
    from specnet._draw.graph import drawing

    spec = specnet.load(REPO / "examples/resnet18.yaml")
    d = drawing(spec, infer(spec), summarize(spec), "resnet18")
    adds = [b.id for b in d.boxes.values() if b.type == "Add"]
    assert len(adds) == 8
    for add in adds:
        tails = [e.tail for e in d.edges if e.head == add]
        assert len(tails) == 2 and len(set(tails)) == 2  # the block's path and its shortcut


def test_input_names_that_are_dot_keywords_or_have_dashes_draw(tmp_path: Path) -> None:
    spec = tmp_path / "two.yaml"
    spec.write_text(
        "input: {node: {shape: [4]}, image-a: {shape: [4]}}\n"
        "model:\n"
        "  type: Graph\n"
        "  inputs: [node, image-a]\n"
        "  nodes:\n"
        "    sum: {type: Add, input: [node, image-a]}\n"
    )
    out = tmp_path / "two.svg"
    assert main(["draw", str(spec), "-o", str(out)]) == 0
    texts = _texts(out.read_text(encoding="utf-8"))
    assert "node [4]" in texts and "image-a [4]" in texts and "sum: Add" in texts
