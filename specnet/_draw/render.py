"""``specnet draw``: Graphviz's ``dot`` lays the drawing out as SVG or PNG; the HTML page is
that SVG inline with a small script (no network: it works from a file, offline)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

from specnet._build.summary import summarize
from specnet._front.errors import UsageError
from specnet._front.infer import infer
from specnet._front.spec import Spec
from specnet._train.files import atomic_write_bytes, write_failure

from .dot import dot_text
from .graph import Drawing, drawing

__all__ = ["FORMATS", "draw", "html_page", "render"]

FORMATS = ("svg", "png", "html")
"""What ``-o`` may end in."""

DOT_TIMEOUT = 120.0
"""Seconds ``dot`` may take (a model of thousands of layers takes a few)."""

_PAGE = Path(__file__).with_name("page.html")
_SLOT = re.compile(r"\{\{(title|data|svg)\}\}")


def render(dot: str, fmt: str) -> bytes:
    """``dot -T<fmt>`` of ``dot``; a missing Graphviz is a :class:`UsageError` saying so."""
    program = shutil.which("dot")
    if program is None:
        raise UsageError(
            "drawing needs Graphviz's dot program: install Graphviz "
            "(apt install graphviz, brew install graphviz, conda install graphviz)"
        )
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"],
            input=dot.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"Graphviz's dot took more than {DOT_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise UsageError("Graphviz's dot failed: " + done.stderr.decode(errors="replace")[-500:])
    return done.stdout


def html_page(d: Drawing, svg: str) -> str:
    """The self-contained page: the SVG, each box's details, folding of clusters."""
    start = svg.find("<svg")
    details = {f"box-{b.id}": {"title": b.name, **b.details} for b in d.boxes.values() if b.details}
    clusters = {
        f"cluster-{c.id}": {
            "id": c.id,
            "title": c.name,
            "type": c.block or c.type,
            "block": bool(c.block),
        }
        for c in d.clusters.values()
    }
    data = (
        json.dumps({"boxes": details, "clusters": clusters})
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )  # inert inside <script>, whatever the names hold
    parts = {
        "title": html.escape(d.title),
        "data": data,
        "svg": svg[start:] if start >= 0 else svg,
    }
    page = _PAGE.read_text(encoding="utf-8")
    return _SLOT.sub(lambda m: parts[m[1]], page)  # one pass: a name holding {{svg}} stays text


def draw(spec: Spec, out: Path, *, title: str) -> None:
    """Write ``spec``'s picture to ``out`` (its suffix chooses: .svg, .png or .html)."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"-o must end in .svg, .png or .html, got '{out.name}'")
    plan = infer(spec)
    d = drawing(spec, plan, summarize(spec), title)
    dot = dot_text(d)
    if fmt == "html":
        data = html_page(d, render(dot, "svg").decode("utf-8")).encode("utf-8")
    else:
        data = render(dot, fmt)
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise UsageError(write_failure(exc, str(out))) from None
