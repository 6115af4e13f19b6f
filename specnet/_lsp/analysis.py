"""One spec text analysed as ``specnet validate`` checks it: its problems with exact ranges,
each node's inferred shapes and arguments, and its names (:mod:`.index`).

Ranges here are 0-based lines and columns in code points; the server converts them to the
client's position encoding.
"""

from __future__ import annotations

import functools
import re
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from specnet._front.check import check_document
from specnet._front.errors import ErrorItem, Path, SpecError, SpecWarning
from specnet._front.infer import Step, infer
from specnet._front.layout import macs, walk
from specnet._front.rules.base import show
from specnet._front.source import Document, SourceMap, read_document
from specnet._front.spec import Layer, Spec

from .index import Index, index_document

__all__ = ["Analysis", "Occurrence", "Problem", "Range", "analyze"]

Range = tuple[tuple[int, int], tuple[int, int]]
"""((line, column), (line, column)), 0-based, end exclusive."""

_SUGGESTION = re.compile(r"did you mean ((?:'[^']*'(?:, | or )?)+)\?")
_QUOTED = re.compile(r"'([^']*)'")
_TOKEN_END = re.compile(r"[\s,:\]\}#]")


@dataclass(frozen=True)
class Problem:
    range: Range
    message: str
    kind: str
    warning: bool = False
    suggestions: tuple[str, ...] = ()
    """The names a "did you mean" proposes, the best first; each may replace ``range``."""


@dataclass(frozen=True)
class Occurrence:
    """One module built from a node of the text (a block's body is built once per use)."""

    name: str
    """Qualified module name (``layer1.0.conv1``), as in ``state_dict()`` keys."""
    step: Step

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one sample (summed when asked: only hovers need them)."""
        return macs(self.step)


@dataclass
class Analysis:
    text: str
    problems: list[Problem] = field(default_factory=list)
    document: Document | None = None
    """The text as read; None when it is not YAML."""
    spec: Spec | None = None
    """The valid spec; None when the text has errors."""
    by_path: dict[Path, list[Occurrence]] = field(default_factory=dict)
    """Each node's modules, by the node's path in the text (and a block use's path)."""
    source: SourceMap | None = None
    internal: str | None = None
    """The traceback of an internal error, for the server's log."""

    @functools.cached_property
    def index(self) -> Index:
        """The names and outline (made when first asked for: diagnostics do not need it)."""
        return Index() if self.document is None else index_document(self.document)

    def line_of(self, path: Path) -> int | None:
        """The 0-based line where the node at ``path`` starts (its key, else its value)."""
        if self.source is None:
            return None
        pos = self.source.keys.get(path) or self.source.values.get(path)
        return None if pos is None else pos[0] - 1

    def hint_column(self, path: Path) -> int:
        """The 0-based column after the node at ``path`` on its first line: after its value
        when that fits on the line (``conv: {type: Conv2d, ...}``), else after its key."""
        assert self.source is not None
        start = self.source.values.get(path)
        end = self.source.value_ends.get(path)
        key = self.source.key_ends.get(path)
        line = self.line_of(path)
        if start and end and line is not None and start[0] - 1 == line == end[0] - 1:
            return end[1] - 1
        if key is not None:
            return key[1] - 1
        return end[1] - 1 if end else 0

    def node_at(self, line: int) -> Path | None:
        """The innermost node starting on the 0-based ``line``."""
        best: Path | None = None
        for path in self.by_path:
            if self.line_of(path) == line and (best is None or len(path) > len(best)):
                best = path
        return best


def analyze(text: str, file: str | None = None) -> Analysis:
    """Every problem ``specnet validate`` reports for ``text``, and what is known of its nodes."""
    result = Analysis(text)
    lines = text.splitlines()
    try:
        doc = read_document(text if "\n" in text else text + "\n")
    except SpecError as exc:
        result.problems = [_problem(e, None, lines) for e in exc.errors]
        return result
    doc.source.file = file
    result.source = doc.source
    result.document = doc
    plans: list[Step] = []
    inferred: list[Step] = []

    def shapes(spec: Spec) -> None:
        first = not plans and not inferred
        plans.append(infer(spec, inferred.append if first else None))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        try:
            result.spec = check_document(doc, shapes)
        except SpecError as exc:
            result.problems = [_problem(e, doc.source, lines) for e in exc.errors]
        except Exception as exc:  # a bug in specnet: say so where the user looks
            result.problems = [
                Problem(
                    ((0, 0), (0, max(1, len(lines[0]) if lines else 1))),
                    f"specnet could not check this text (an internal error, please report it): "
                    f"{type(exc).__name__}: {exc}",
                    "internal",
                )
            ]
            result.internal = traceback.format_exc()
    seen: set[str] = set()
    for w in caught:  # each once, as specnet validate prints them (variants repeat them)
        if isinstance(w.message, SpecWarning) and str(w.message) not in seen:
            seen.add(str(w.message))
            result.problems.append(_problem(w.message.item, doc.source, lines, warning=True))
    if result.spec is not None and plans:
        for name, _, step in walk(plans[0]):
            for path in _paths(step):
                occurrence = Occurrence(name, step)
                result.by_path.setdefault(path, []).append(occurrence)
    else:  # a shape error: what was inferred before it (module names are not known)
        for step in inferred:
            for path in _paths(step):
                result.by_path.setdefault(path, []).append(Occurrence("", step))
    return result


def _paths(step: Step) -> Iterator[Path]:
    yield step.node.path
    yield from step.node.used_at


_UNKNOWN_PARAM = re.compile(r"^unknown [a-z ]*'(\$[A-Za-z_][A-Za-z0-9_]*)'")


def _problem(
    e: ErrorItem, source: SourceMap | None, lines: list[str], warning: bool = False
) -> Problem:
    found = _SUGGESTION.search(e.msg)
    message = e.msg + (" [" + "; ".join(e.notes) + "]" if e.notes else "")
    span = _range(e, source, lines)
    param = _UNKNOWN_PARAM.match(e.msg)
    if param is not None and span[0][0] == span[1][0]:  # just the $name inside the value
        (line, start), (_, end) = span
        text = lines[line][start:end] if line < len(lines) else ""
        at = re.search(re.escape(param[1]) + r"(?![A-Za-z0-9_])", text)
        if at is not None:
            span = (line, start + at.start()), (line, start + at.end())
    return Problem(
        span,
        message,
        e.kind,
        warning,
        tuple(_QUOTED.findall(found[1])) if found else (),
    )


def _range(e: ErrorItem, source: SourceMap | None, lines: list[str]) -> Range:
    """The text the problem is about: the key or value at its position, else the token there."""
    if e.line is None or e.col is None:
        return (0, 0), (0, 1)
    at = (e.line, e.col)
    start = (e.line - 1, e.col - 1)
    if source is not None:
        probe = e.path
        while True:
            for starts, ends in (
                (source.keys, source.key_ends),
                (source.values, source.value_ends),
            ):
                end = ends.get(probe)
                if starts.get(probe) == at and end is not None and end[0] == e.line:
                    # an empty value (``input:``) still gets a character to be seen on
                    return start, (end[0] - 1, max(end[1] - 1, start[1] + 1))
            if not probe:
                break
            probe = probe[:-1]
    line = lines[start[0]] if start[0] < len(lines) else ""
    rest = line[start[1] :]
    if rest.startswith(("{", "[")) or not rest.strip():
        return start, (start[0], max(len(line), start[1] + 1))  # a container: to the line's end
    stop = _TOKEN_END.search(rest, 1)
    return start, (start[0], start[1] + (stop.start() if stop else len(rest)))


def inferred_arguments(step: Step) -> dict[str, Any]:
    """The arguments shape inference filled in (``in_features``), not given in the spec."""
    node = step.node
    if not isinstance(node, Layer):
        return {}
    return {k: v for k, v in step.args.items() if k not in node.args}


def shape_text(step: Step) -> str:
    return show(step.output)
