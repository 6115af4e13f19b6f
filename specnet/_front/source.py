"""Text -> plain Python data, remembering where every key and value came from.

YAML is read event by event, never through PyYAML's constructors: no tag can
build a Python object, aliases are expanded under a budget, nesting depth and
document size are bounded, and duplicate keys are errors (PyYAML keeps the last
silently). Scalars follow the YAML 1.2 core schema, as JSON and the editors'
yaml-language-server do: ``no`` is a string, ``1e-3`` is a float. A syntax error is
worded in the file's terms and located at the mistake, not where the parser gave up
(specnet._front.syntax).
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from . import syntax
from .errors import ErrorItem, Path, SpecSyntaxError
from .limits import MAX_BYTES, MAX_DEPTH, MAX_INT, MAX_NODES
from .syntax import reader_error, syntax_error

__all__ = ["Document", "SourceMap", "plain_scalar", "read_document"]


_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_STD_TAG = "tag:yaml.org,2002:"
_TOO_BIG = f"spec is larger than {MAX_BYTES} bytes (a fixed limit, specnet._front.limits.MAX_BYTES)"
_ALLOWED_TAGS = {_STD_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


class _IntTooLarge(ValueError):
    """An integer literal outside what torch takes (64-bit)."""


def _int(text: str, base: int = 10) -> int:
    # Checked before int() converts it: a long digit string costs quadratic time.
    if len(text) > 40:
        raise _IntTooLarge
    value = int(text, base)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise _IntTooLarge
    return value


def plain_scalar(text: str) -> Any:
    """Resolve an untagged plain scalar by the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return _int(text)
    if _OCT.match(text):
        return _int(text[2:], 8)
    if _HEX.match(text):
        return _int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a document starts in the file."""

    file: str | None
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    value_ends: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """Where each value ends (just past its last character; a mapping or list: its last value)."""
    key_ends: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """Where each mapping key ends."""
    text: bool = True
    """Read from text (a file or a string); a mapping given from Python has no positions."""

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int] | None:
        """The position of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = path
        while True:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            if not probe:
                return None
            probe = probe[:-1]
            table = self.values

    def error(
        self,
        path: Path,
        msg: str,
        *,
        kind: str = "invalid",
        key: bool = False,
        notes: tuple[str, ...] = (),
    ) -> ErrorItem:
        pos = self.position(path, key=key)
        # A problem of the whole document is at the start of its text.
        line, col = pos if pos else ((1, 1) if self.text else (None, None))
        return ErrorItem(path, msg, kind, self.file, line, col, notes)


@dataclass
class Document:
    """A loaded spec: plain data plus where it came from."""

    data: Any
    source: SourceMap
    errors: list[ErrorItem] = field(default_factory=list)
    """Problems that did not stop reading (duplicate keys); reported with validation's."""


class _Frame:
    __slots__ = (
        "anchor",
        "container",
        "flow",
        "height",
        "merge_into",
        "merged",
        "path",
        "pending_key",
        "start",
    )

    def __init__(self, container: Any, path: Path, anchor: str | None, start: int) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.start = start
        self.pending_key: tuple[str, tuple[int, int]] | None = None
        self.height = 1
        """Levels of nesting in this value so far, aliases expanded."""
        self.merged: set[str] = set()
        """Keys taken over by a ``<<`` merge; an explicit key replaces them."""
        self.merge_into: tuple[_Frame, tuple[int, int]] | None = None
        """The mapping (and the ``<<`` key's position) this value, written in place after
        ``<<:``, merges into once it is complete."""
        self.flow = False
        """Written in flow style (``{...}``, ``[...]``)."""


class _Builder:
    """Builds plain data from PyYAML events with an explicit stack (no recursion)."""

    def __init__(self, text: str, file: str | None) -> None:
        self.text = text
        self.source = SourceMap(file)
        self.errors: list[ErrorItem] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        """anchor -> (value, values in it, levels of nesting in it), aliases expanded."""
        self.nodes = 0
        self.key_end = (1, 1)
        """Where the last mapping key read ends."""
        self.last_end: Any = None
        """The end mark of the last scalar or alias read (a block mapping's own end mark is
        where the next one starts)."""

    def fail(self, line: int | None, col: int | None, msg: str) -> SpecSyntaxError:
        return SpecSyntaxError([ErrorItem((), msg, "syntax", self.source.file, line, col)])

    def count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise self.fail(
                mark.line + 1,
                mark.column + 1,
                f"document too large: more than {MAX_NODES} values once aliases are expanded "
                "(a fixed limit, specnet._front.limits.MAX_NODES)",
            )

    def run(self) -> Any:
        stack: list[_Frame] = []
        root: list[Any] = []
        documents = 0
        for event in yaml.parse(self.text, Loader=syntax.PARSER):
            mark: Any = event.start_mark
            pos = (mark.line + 1, mark.column + 1)
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(*pos, "a spec file holds one YAML document, found a second")
                continue
            if isinstance(
                event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)
            ):
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                # A block collection's end mark is where the next token starts: it ends with
                # its last value instead. A flow one ends past its closing bracket.
                end: Any = event.end_mark if frame.flow else self.last_end
                if end is None:
                    end = event.start_mark
                self.source.value_ends[frame.path] = (end.line + 1, end.column + 1)
                self.last_end = end
                if stack:
                    stack[-1].height = max(stack[-1].height, frame.height + 1)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (
                        frame.container,
                        self.nodes - frame.start,
                        frame.height,
                    )
                if frame.merge_into is not None:
                    self._merge(*frame.merge_into, frame.container)
                continue

            tag = getattr(event, "tag", None)
            if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
                raise self.fail(*pos, f"YAML tag '{tag}' is not allowed in a spec (specs are data)")

            # Where does this value go?
            parent = stack[-1] if stack else None
            if (
                parent is not None
                and isinstance(parent.container, dict)
                and parent.pending_key is None
            ):
                parent.pending_key = (self._key(event, pos), pos)
                end = event.end_mark
                assert end is not None
                self.key_end = (end.line + 1, end.column + 1)
                self.last_end = end
                continue
            if parent is None:
                path: Path = ()
            elif isinstance(parent.container, dict):
                assert parent.pending_key is not None
                path = (*parent.path, parent.pending_key[0])
            else:
                path = (*parent.path, len(parent.container))

            value: Any
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in self.anchors:
                    raise self.fail(*pos, f"alias '*{event.anchor}' refers to no finished anchor")
                shared, size, height = self.anchors[event.anchor]
                self.count(size, mark)
                if len(stack) + height > MAX_DEPTH:
                    raise self.fail(
                        *pos,
                        f"document nested too deeply once alias '*{event.anchor}' is expanded "
                        f"(more than {MAX_DEPTH} levels; a fixed limit, specnet._front.limits.MAX_DEPTH)",
                    )
                if parent is not None:
                    parent.height = max(parent.height, height + 1)
                value = copy.deepcopy(shared)
            elif isinstance(event, yaml.ScalarEvent):
                self.count(1, mark)
                value = self._scalar(event, pos)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1, 0)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self.count(1, mark)
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(
                        *pos,
                        "document nested too deeply "
                        f"(more than {MAX_DEPTH} levels; a fixed limit, specnet._front.limits.MAX_DEPTH)",
                    )
                value = {} if isinstance(event, yaml.MappingStartEvent) else []
            else:  # pragma: no cover - PyYAML has no other events
                raise self.fail(*pos, f"unexpected YAML event {type(event).__name__}")

            self.source.values[path] = pos
            if not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                end = event.end_mark
                assert end is not None
                self.source.value_ends[path] = (end.line + 1, end.column + 1)
                self.last_end = end
            merge = self._attach(parent, path, value, root)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append(_Frame(value, path, event.anchor, self.nodes))
                stack[-1].flow = bool(event.flow_style)
                # A mapping written in place after `<<:` is still empty here: it merges
                # when it ends.
                stack[-1].merge_into = merge
            elif merge is not None:
                self._merge(*merge, value)
        return root[0] if root else None

    def _key(self, event: Any, pos: tuple[int, int]) -> str:
        if not isinstance(event, yaml.ScalarEvent):
            raise self.fail(
                *pos, "mapping keys must be plain strings, not mappings, lists or aliases"
            )
        self.count(1, event.start_mark)
        return str(event.value)

    def _scalar(self, event: Any, pos: tuple[int, int]) -> Any:
        try:
            return self._resolve(event, pos)
        except _IntTooLarge:
            text = event.value if len(event.value) <= 24 else event.value[:20] + "..."
            raise self.fail(
                *pos,
                f"integer {text} is outside the 64-bit range torch takes "
                f"(at most {MAX_INT}; a fixed limit, specnet._front.limits.MAX_INT)",
            ) from None

    def _resolve(self, event: Any, pos: tuple[int, int]) -> Any:
        text: str = event.value
        tag = event.tag
        if tag in (None, "!"):
            plain = not event.style and event.implicit[0]
            return plain_scalar(text) if plain else text
        kind = tag[len(_STD_TAG) :]
        if kind == "str":
            return text
        value = plain_scalar(text)
        expected: Any = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}.get(
            kind
        )
        if (
            expected is None
            or not isinstance(value, expected)
            or (kind == "int" and isinstance(value, bool))
        ):
            raise self.fail(*pos, f"'{text}' is not a valid !!{kind}")
        return float(value) if kind == "float" else value

    def _attach(
        self, parent: _Frame | None, path: Path, value: Any, root: list[Any]
    ) -> tuple[_Frame, tuple[int, int]] | None:
        """Put ``value`` in its place; for a ``<<`` merge, return the mapping it merges into
        (and the key's position) instead: the caller merges it once it is complete."""
        if parent is None:
            root.append(value)
            return None
        if isinstance(parent.container, list):
            parent.container.append(value)
            return None
        assert parent.pending_key is not None
        key, key_pos = parent.pending_key
        parent.pending_key = None
        if key == "<<" and isinstance(value, (dict, list)):
            return parent, key_pos
        if key in parent.merged:
            parent.merged.discard(key)
            del parent.container[key]
        if key in parent.container:
            first = self.source.keys.get(path)
            where = f" (first at line {first[0]})" if first else ""
            self.errors.append(
                ErrorItem(
                    path,
                    f"duplicate key '{key}'{where}",
                    "duplicate_key",
                    self.source.file,
                    *key_pos,
                )
            )
            return None
        self.source.keys[path] = key_pos
        self.source.key_ends[path] = self.key_end
        parent.container[key] = value
        return None

    def _merge(self, parent: _Frame, pos: tuple[int, int], value: Any) -> None:
        """YAML merge key ``<<: *defaults``: keys not set explicitly are taken over. A key
        written in place (``<<: {bias: false}``) keeps its own position."""
        sources = value if isinstance(value, list) else [value]
        here = (*parent.path, "<<")
        for i, source in enumerate(sources):
            written = (*here, i) if isinstance(value, list) else here
            if not isinstance(source, dict):
                self.errors.append(
                    ErrorItem(
                        parent.path, "'<<' merges mappings only", "syntax", self.source.file, *pos
                    )
                )
                continue
            for k, v in source.items():
                if k not in parent.container:
                    parent.merged.add(k)
                    parent.container[k] = copy.deepcopy(v)
                    self.source.keys.setdefault(
                        (*parent.path, k), self.source.keys.get((*written, k), pos)
                    )
                    self.source.values.setdefault(
                        (*parent.path, k), self.source.values.get((*written, k), pos)
                    )


def _parse_text(text: str, file: str | None) -> Document:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecSyntaxError([ErrorItem((), _TOO_BIG, "syntax", file, 1, 1)])
    builder = _Builder(text, file)
    try:
        data = builder.run()
    except yaml.MarkedYAMLError as exc:
        raise SpecSyntaxError([syntax_error(text, exc, file)]) from None
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        raise SpecSyntaxError([reader_error(text, exc, file)]) from None
    return Document(data, builder.source, builder.errors)


def read_document(source: str | os.PathLike[str] | Mapping[str, Any]) -> Document:
    """Read a spec from a file path, YAML/JSON text, or a mapping.

    A :class:`os.PathLike` is always a file. A ``str`` is a file name when it is a
    single line ending in ``.yaml``, ``.yml`` or ``.json``; otherwise it is the spec text.
    """
    if isinstance(source, Mapping):
        return Document(copy.deepcopy(dict(source)), SourceMap(None, text=False))
    if isinstance(source, os.PathLike) or (
        isinstance(source, str)
        and "\n" not in source
        and source.strip().lower().endswith((".yaml", ".yml", ".json"))
    ):
        name = os.fspath(source)
        path = FsPath(name)
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SpecSyntaxError([ErrorItem((), _TOO_BIG, "syntax", name, 1, 1)])
            raw = path.read_bytes()
        except OSError as exc:
            raise SpecSyntaxError(
                [ErrorItem((), f"cannot read spec: {exc.strerror}", "io", name, 1, 1)]
            ) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            msg = f"spec is not UTF-8 text (byte {exc.start})"
            raise SpecSyntaxError([ErrorItem((), msg, "syntax", name, line, col)]) from None
        return _parse_text(text, name)
    if isinstance(source, str):
        return _parse_text(source, None)
    raise TypeError(f"expected a file path, spec text or a mapping, got {type(source).__name__}")
