"""The names of a spec as written: graph nodes, blocks and parameters, where each is defined
and every place that refers to it.

Read from the document's plain data and its source map (no validation needed, so the index
exists while the spec is being typed and is invalid). Positions are the source map's: 1-based
lines and columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from specnet._front.errors import Path
from specnet._front.source import Document

__all__ = ["CONTAINERS", "Index", "Name", "Outline", "index_document"]

CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "Graph")
"""The container types; their children are under ``layers:`` (``nodes:`` for a Graph)."""

_PARAM_USE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")

Pos = tuple[int, int]


@dataclass(frozen=True)
class Name:
    """One occurrence of a name: its definition (a mapping key) or a reference to it."""

    kind: str
    """``node`` (a graph's node or input), ``block`` or ``param``."""
    scope: Path
    """Where the name is defined: the graph's path, ``()`` for blocks, the block's path (or
    ``()`` for the model's ``params:``) for parameters."""
    name: str
    start: Pos
    end: Pos
    definition: bool


@dataclass
class Outline:
    """A container, node or block, for the document's outline."""

    name: str
    detail: str
    kind: str
    """``container``, ``layer``, ``block`` or ``section``."""
    start: Pos
    end: Pos
    selection: tuple[Pos, Pos]
    children: list[Outline] = field(default_factory=list)


@dataclass
class Index:
    names: list[Name] = field(default_factory=list)
    outline: list[Outline] = field(default_factory=list)
    blocks: dict[str, Any] = field(default_factory=dict)
    """Block name -> its definition as written (for ``$param`` completion)."""
    graphs: dict[Path, list[str]] = field(default_factory=dict)
    """Graph path -> the names its nodes may read (its inputs and nodes)."""

    def at(self, line: int, col: int) -> Name | None:
        """The name whose text holds the 1-based position, if any."""
        for n in self.names:
            if n.start[0] == line == n.end[0] and n.start[1] <= col <= n.end[1]:
                return n
        return None

    def same(self, name: Name) -> list[Name]:
        """Every occurrence of the name ``name`` stands for, its definition first."""
        found = [
            n for n in self.names if (n.kind, n.scope, n.name) == (name.kind, name.scope, name.name)
        ]
        return sorted(found, key=lambda n: not n.definition)

    def graph_at(self, path: Path) -> Path | None:
        """The innermost graph holding ``path``."""
        best: Path | None = None
        for g in self.graphs:
            if path[: len(g)] == g and (best is None or len(g) > len(best)):
                best = g
        return best


class _Indexer:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.src = doc.source
        self.index = Index()
        data = doc.data if isinstance(doc.data, dict) else {}
        blocks = data.get("blocks")
        self.block_names: set[str] = set(blocks) if isinstance(blocks, dict) else set()
        self.globals: set[str] = (
            set(data["params"]) if isinstance(data.get("params"), dict) else set()
        )

    def key(self, path: Path) -> tuple[Pos, Pos] | None:
        start, end = self.src.keys.get(path), self.src.key_ends.get(path)
        return (start, end) if start and end else None

    def value(self, path: Path) -> tuple[Pos, Pos] | None:
        start, end = self.src.values.get(path), self.src.value_ends.get(path)
        return (start, end) if start and end else None

    def add(
        self,
        kind: str,
        scope: Path,
        name: str,
        path: Path,
        key: bool,
        *,
        refers: bool = False,
    ) -> None:
        """Record ``name`` at ``path``'s key (``key``) or value; a key is its definition
        unless it ``refers`` to one made elsewhere (a variant's value of a parameter)."""
        span = self.key(path) if key else self.value(path)
        if span is not None and span[0][0] == span[1][0]:
            start, end = span
            if end[1] - start[1] == len(name) + 2:  # a quoted scalar: the name inside
                start, end = (start[0], start[1] + 1), (end[0], end[1] - 1)
            self.index.names.append(Name(kind, scope, name, start, end, key and not refers))

    def run(self) -> Index:
        data = self.doc.data
        if not isinstance(data, dict):
            return self.index
        for p in self.globals:
            self.add("param", (), p, ("params", p), True)
        blocks = data.get("blocks")
        if isinstance(blocks, dict):
            kids = []
            for name, block in blocks.items():
                path: Path = ("blocks", name)
                self.add("block", (), name, path, True)
                self.index.blocks[name] = block
                body = block.get("body") if isinstance(block, dict) else None
                params = block.get("params") if isinstance(block, dict) else None
                names = set(params) if isinstance(params, dict) else set()
                for p in names:
                    self.add("param", path, p, (*path, "params", p), True)
                self.params_in(body, (*path, "body"), path, names)
                outline = self.outline_of(name, "block", path)
                if outline is not None:
                    child = self.node(body, (*path, "body"), "body")
                    if child is not None:
                        outline.children.append(child)
                    kids.append(outline)
            section = self.outline_of("blocks", "section", ("blocks",))
            if section is not None:
                section.children = kids
                self.index.outline.append(section)
        variants = data.get("variants")
        if isinstance(variants, dict):  # a variant's values name the model's parameters
            for vname, given in variants.items():
                if isinstance(given, dict):
                    for p in given:
                        if p in self.globals:
                            self.add("param", (), p, ("variants", vname, p), True, refers=True)
        if "input" in data:  # input: [3, $res, $res]
            self.params_in(data["input"], ("input",), (), set())
        model = data.get("model")
        inputs = data.get("input")
        if (
            isinstance(model, dict)
            and model.get("type") == "Graph"
            and isinstance(inputs, dict)
            and "shape" not in inputs
        ):  # named inputs: the model graph's `inputs:` lists the same names
            for name in inputs:
                self.add("node", ("model",), str(name), ("input", name), True, refers=True)
        if "model" in data:
            self.params_in(model, ("model",), (), set())
            top = self.node(model, ("model",), "model")
            if top is not None:
                self.index.outline.append(top)
        return self.index

    def outline_of(self, name: str, kind: str, path: Path, detail: str = "") -> Outline | None:
        key = self.key(path)
        start = key[0] if key else self.src.values.get(path)
        end = self.src.value_ends.get(path)
        if start is None or end is None:
            return None
        selection = key if key else (start, start)
        return Outline(name, detail, kind, start, max(start, end), selection)

    def node(self, raw: Any, path: Path, name: str) -> Outline | None:
        """Index a node (its block use, a graph's names) and return its outline entry."""
        if isinstance(raw, str):
            if raw in self.block_names:
                self.add("block", (), raw, path, False)
            return self.outline_of(name, "layer", path, raw)
        if not isinstance(raw, dict):
            return None
        kind = raw.get("type")
        if isinstance(kind, str) and kind in self.block_names:
            self.add("block", (), kind, (*path, "type"), False)
        detail = kind if isinstance(kind, str) else ""
        entry = self.outline_of(name, "container" if kind in CONTAINERS else "layer", path, detail)
        if kind == "Graph":
            self.graph(raw, path, entry)
            return entry
        for member in ("layers", "between", "encoder_layer", "decoder_layer"):
            for child_name, child_path, child in _children(raw.get(member), (*path, member)):
                sub = self.node(child, child_path, child_name)
                if sub is not None and entry is not None:
                    entry.children.append(sub)
        return entry

    def graph(self, raw: dict[str, Any], path: Path, entry: Outline | None) -> None:
        inputs = raw.get("inputs", ["input"])
        readable: list[str] = []
        if isinstance(inputs, list):
            for i, item in enumerate(inputs):
                if isinstance(item, str):
                    readable.append(item)
                    span = self.value((*path, "inputs", i))
                    if span is not None:
                        self.index.names.append(Name("node", path, item, *span, True))
        nodes = raw.get("nodes")
        if isinstance(nodes, dict):
            for name, node in nodes.items():
                node_path: Path = (*path, "nodes", name)
                readable.append(name)
                self.add("node", path, name, node_path, True)
                if isinstance(node, dict):
                    for ref, ref_path in _refs(node.get("input"), (*node_path, "input")):
                        self.add("node", path, ref, ref_path, False)
                    call = node.get("call")
                    if isinstance(call, dict):
                        for k, v in call.items():
                            if isinstance(v, str) and not v.startswith("$"):
                                self.add("node", path, v, (*node_path, "call", k), False)
                sub = self.node(node, node_path, name)
                if sub is not None and entry is not None:
                    entry.children.append(sub)
        for member in ("output", "train_output"):
            for ref, ref_path in _refs(raw.get(member), (*path, member)):
                self.add("node", path, ref, ref_path, False)
        self.index.graphs[path] = readable

    def params_in(self, raw: Any, path: Path, scope: Path, names: set[str]) -> None:
        """``$name`` uses in ``raw``: of the block's parameters (``names``) or the model's."""
        for value, where in _strings(raw, path):
            span = self.value(where)
            if span is None or span[0][0] != span[1][0]:
                continue
            (line, col), (_, end) = span
            shift = 1 if end - col == len(value) + 2 else 0  # quoted
            for found in _PARAM_USE.finditer(value):
                name = found[1]
                owner = scope if name in names else () if name in self.globals else None
                if owner is None:
                    continue
                start = (line, col + shift + found.start(1))
                self.index.names.append(
                    Name("param", owner, name, start, (line, start[1] + len(name)), False)
                )
            # keys that are exactly $name are parameters too (rare); not indexed


def _children(raw: Any, path: Path) -> Iterator[tuple[str, Path, Any]]:
    if isinstance(raw, list):
        for i, child in enumerate(raw):
            yield str(i), (*path, i), child
    elif isinstance(raw, dict):
        if "type" in raw:  # a single node (``between:``, ``encoder_layer:``)
            yield path[-1] if isinstance(path[-1], str) else "", path, raw
            return
        for name, child in raw.items():
            yield str(name), (*path, name), child
    elif isinstance(raw, str):
        yield str(path[-1]), path, raw


def _refs(raw: Any, path: Path) -> Iterator[tuple[str, Path]]:
    if isinstance(raw, str):
        yield raw, path
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, str):
                yield item, (*path, i)


def _strings(raw: Any, path: Path) -> Iterator[tuple[str, Path]]:
    stack = [(raw, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if "$" in value:
                yield value, where
        elif isinstance(value, dict):
            stack.extend((v, (*where, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(value))


def index_document(doc: Document) -> Index:
    """The names and outline of a read document."""
    return _Indexer(doc).run()
