"""``specnet lsp``: the language server, on pygls.

Each change is analysed after a short pause (``DEBOUNCE``: changes closer together than that,
a paste or an editor's multi-part edit, cost one analysis), and a version is never published
after a newer one. Requests (inlay hints,
hover, ...) analyse the current version first if the pause has not run yet, so an answer
never describes an older text. The last text that parsed is kept for names, so completion
keeps working while a line is half typed.
"""

from __future__ import annotations

import asyncio
import re
import traceback
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from specnet._front.registry import layers
from specnet._front.rules.base import show
from specnet._front.source import plain_scalar
from specnet._front.validate.blocks import BLOCK_NAME
from specnet._front.validate.context import LAYER_NAME, PARAM_NAME, spec_text
from specnet._front.version import installed_version

from .analysis import Analysis, Occurrence, Range, analyze, inferred_arguments
from .counts import Counts
from .index import Index, Name, Outline

__all__ = ["DEBOUNCE", "create_server", "main"]

DEBOUNCE = 0.01
"""Seconds a change waits for the next one before it is analysed."""

COUNTS_AFTER = 0.5
"""Seconds a valid text must stay unchanged before its parameters are counted (a build on
the meta device in the worker process: heavier than the analysis, and only hovers need it)."""

_MAX_SHOWN = 3
"""Distinct shapes shown in one inlay hint (a block used at several widths)."""

_IN_INPUT = re.compile(r"(?:^|[{,\s])(?:input|output|train_output)\s*:\s*(?:\[[^\]]*)?[\w-]*$")
_IN_TYPE = re.compile(r"(?:^|[{,\s])type\s*:\s*[\w.]*$")
_PARAM = re.compile(r"\$[A-Za-z_0-9]*$")


_MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=\S*specnet[\w.-]*\.json", re.M)
_SPEC_NAME = re.compile(r"\.specnet\.(?:ya?ml|json)$")


def is_spec(uri: str, text: str) -> bool:
    """Whether a document is a spec file: named ``*.specnet.yaml`` (``.yml``, ``.json``), as
    the pre-commit hook finds them, or binding specnet's schema in a modeline, as the
    examples do. Other YAML files of the workspace (CI, compose files) are left alone."""
    path = urllib.parse.urlparse(uri).path
    return bool(_SPEC_NAME.search(path)) or bool(_MODELINE.search(text[:4096]))


@dataclass
class _State:
    version: int | None
    analysis: Analysis


class SpecServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("specnet", installed_version())
        self.states: dict[str, _State] = {}
        self.named: dict[str, Analysis] = {}
        """The last analysis of each document whose text parsed (for names)."""
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.counting: dict[str, asyncio.Task[None]] = {}
        self.counts = Counts()

    def document(self, uri: str) -> TextDocument:
        return self.workspace.get_text_document(uri)

    def current(self, uri: str) -> Analysis:
        """The analysis of the document's current text."""
        doc = self.document(uri)
        state = self.states.get(uri)
        if state is None or state.version != doc.version or state.analysis.text != doc.source:
            analysis = (
                analyze(doc.source, doc.path)
                if is_spec(uri, doc.source)
                else Analysis(doc.source)  # not a spec: nothing to say
            )
            state = _State(doc.version, analysis)
            self.states[uri] = state
            if analysis.source is not None:
                self.named[uri] = analysis
        return state.analysis

    async def _count_later(self, uri: str, version: int | None) -> None:
        await asyncio.sleep(COUNTS_AFTER)
        self.counting.pop(uri, None)
        state = self.states.get(uri)
        doc = self.document(uri)
        if state is not None and state.version == version == doc.version and state.analysis.spec:
            self.counts.request(uri, version, doc.source)

    def names(self, uri: str) -> Analysis:
        self.current(uri)
        return self.named.get(uri) or self.current(uri)

    def schedule(self, uri: str) -> None:
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._publish_later(uri))

    async def _publish_later(self, uri: str) -> None:
        await asyncio.sleep(DEBOUNCE)
        self.pending.pop(uri, None)
        self.publish(uri)

    def count_later(self, uri: str) -> None:
        """Count the parameters of the current text once it has stayed as it is a moment."""
        task = self.counting.pop(uri, None)
        if task is not None:
            task.cancel()
        version = self.document(uri).version
        self.counting[uri] = asyncio.get_running_loop().create_task(self._count_later(uri, version))

    def publish(self, uri: str) -> None:
        try:
            self._publish(uri)
        except Exception:  # a bug in specnet: logged, and the server keeps serving
            self.window_log_message(
                lsp.LogMessageParams(
                    type=lsp.MessageType.Error,
                    message="specnet lsp: publishing diagnostics failed:\n"
                    + traceback.format_exc(),
                )
            )

    def _publish(self, uri: str) -> None:
        doc = self.document(uri)
        analysis = self.current(uri)
        if analysis.internal is not None:
            self.window_log_message(
                lsp.LogMessageParams(type=lsp.MessageType.Error, message=analysis.internal)
            )
        lines = doc.lines
        diagnostics = [
            lsp.Diagnostic(
                range=self.client_range(doc, p.range, lines),
                message=p.message,
                severity=lsp.DiagnosticSeverity.Warning
                if p.warning
                else lsp.DiagnosticSeverity.Error,
                source="specnet",
                code=p.kind,
                data={"suggestions": list(p.suggestions)} if p.suggestions else None,
            )
            for p in analysis.problems
        ]
        if analysis.spec is not None:
            self.count_later(uri)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=doc.version)
        )

    def client_range(
        self, doc: TextDocument, span: Range, lines: Sequence[str] | None = None
    ) -> lsp.Range:
        """A range in code points as the client counts (UTF-16 by default); ``lines`` are
        ``doc.lines``, which a caller converting many ranges reads once."""
        (sl, sc), (el, ec) = span
        return doc.position_codec.range_to_client_units(
            doc.lines if lines is None else lines,
            lsp.Range(start=lsp.Position(sl, sc), end=lsp.Position(el, ec)),
        )

    def server_position(self, doc: TextDocument, position: lsp.Position) -> tuple[int, int]:
        p = doc.position_codec.position_from_client_units(doc.lines, position)
        return p.line, p.character


server = SpecServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def _did_open(ls: SpecServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.states.pop(params.text_document.uri, None)
    ls.publish(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def _did_change(ls: SpecServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def _did_close(ls: SpecServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    for tasks in (ls.pending, ls.counting):
        task = tasks.pop(uri, None)
        if task is not None:
            task.cancel()
    ls.states.pop(uri, None)
    ls.named.pop(uri, None)
    ls.counts.forget(uri)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# -- inlay hints and hover ---------------------------------------------------------------------


def _distinct(values: Sequence[str], noun: str = "shapes") -> str:
    """The distinct values of a node's uses (a block used at several widths), a few shown."""
    unique = list(dict.fromkeys(values))
    text = " | ".join(unique[:_MAX_SHOWN])
    return text + (f" | ... ({len(unique)} {noun})" if len(unique) > _MAX_SHOWN else "")


def hint_labels(occurrences: Sequence[Occurrence]) -> list[str]:
    """The inlay hints of one node: its inferred arguments, then ``-> shape``."""
    labels: list[str] = []
    inferred: dict[str, list[str]] = {}
    for o in occurrences:
        for k, v in inferred_arguments(o.step).items():
            inferred.setdefault(k, []).append(spec_text(v))
    labels += [f"{k}: {_distinct(v, 'values')}" for k, v in inferred.items()]
    labels.append("-> " + _distinct([show(o.step.output) for o in occurrences]))
    return labels


@server.feature(lsp.TEXT_DOCUMENT_INLAY_HINT)
def _inlay_hints(ls: SpecServer, params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
    uri = params.text_document.uri
    doc = ls.document(uri)
    analysis = ls.current(uri)
    first, last = params.range.start.line, params.range.end.line
    hints = []
    lines = doc.lines
    seen: set[int] = set()
    for path in sorted(analysis.by_path, key=len, reverse=True):  # the innermost node wins
        line = analysis.line_of(path)
        if line is None or not first <= line <= last or line in seen or line >= len(lines):
            continue
        seen.add(line)
        end = analysis.hint_column(path)
        position = doc.position_codec.position_to_client_units(lines, lsp.Position(line, end))
        for label in hint_labels(analysis.by_path[path]):
            hints.append(
                lsp.InlayHint(
                    position=position,
                    label=label,
                    kind=lsp.InlayHintKind.Type
                    if label.startswith("->")
                    else lsp.InlayHintKind.Parameter,
                    padding_left=True,
                )
            )
    hints.sort(key=lambda h: (h.position.line, h.position.character))
    return hints


def hover_text(analysis: Analysis, path: tuple[Any, ...], counts: dict[str, int] | None) -> str:
    occurrences = analysis.by_path[path]
    step = occurrences[0].step
    kind = step.kind
    if analysis.spec is None:  # shapes up to a shape error: the modules are not named yet
        parts = [f"**{kind}**"]
    else:
        names = ", ".join(f"`{o.name or '(model)'}`" for o in occurrences[:4])
        more = f" and {len(occurrences) - 4} more" if len(occurrences) > 4 else ""
        parts = [f"**{kind}** — {names}{more}"]
    parts.append("Output: `" + _distinct([show(o.step.output) for o in occurrences]) + "`")
    if step.args:
        inferred = inferred_arguments(step)
        shown = ", ".join(
            f"{k}={spec_text(v)}" + (" (inferred)" if k in inferred else "")
            for k, v in step.args.items()
            if not isinstance(v, dict)
        )
        if shown:
            parts.append(f"Arguments: `{shown}`" if len(shown) < 200 else "Arguments: " + shown)
    if counts is None:
        parts.append("Parameters: counted where torch is installed (`pip install specnet`)")
    else:
        found = [counts[o.name] for o in occurrences if o.name in counts]
        if found:
            parts.append("Parameters: " + " | ".join(f"{n:,}" for n in dict.fromkeys(found)))
    parts.append(
        "Multiply-accumulates per sample: "
        + " | ".join(f"{m:,}" for m in dict.fromkeys(o.macs for o in occurrences))
    )
    if kind in layers():
        doc = layers()[kind].doc.strip()
        if doc:
            parts.append("---\n" + doc)
    return "\n\n".join(parts)


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def _hover(ls: SpecServer, params: lsp.HoverParams) -> lsp.Hover | None:
    uri = params.text_document.uri
    analysis = ls.current(uri)
    doc = ls.document(uri)
    line, _ = ls.server_position(doc, params.position)
    path = analysis.node_at(line)
    if path is None:
        return None
    return lsp.Hover(
        contents=lsp.MarkupContent(
            kind=lsp.MarkupKind.Markdown,
            value=hover_text(analysis, path, ls.counts.get(uri, ls.states[uri].version)),
        )
    )


# -- names: completion, definition, references, rename --------------------------------------


def _name_at(ls: SpecServer, uri: str, position: lsp.Position) -> tuple[Index, Name] | None:
    """The name at ``position`` in the current text (none while the text is not YAML: the
    positions of an older text would point elsewhere)."""
    analysis = ls.current(uri)
    doc = ls.document(uri)
    line, col = ls.server_position(doc, position)
    found = analysis.index.at(line + 1, col + 1)
    return None if found is None else (analysis.index, found)


def _location(ls: SpecServer, uri: str, n: Name) -> lsp.Location:
    return lsp.Location(uri=uri, range=_name_range(ls, uri, n))


def _name_range(ls: SpecServer, uri: str, n: Name) -> lsp.Range:
    doc = ls.document(uri)
    span = ((n.start[0] - 1, n.start[1] - 1), (n.end[0] - 1, n.end[1] - 1))
    return ls.client_range(doc, span)


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def _definition(ls: SpecServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    uri = params.text_document.uri
    found = _name_at(ls, uri, params.position)
    if found is None:
        return None
    index, name = found
    same = index.same(name)
    if not same or not same[0].definition:
        return None
    return _location(ls, uri, same[0])


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def _references(ls: SpecServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
    uri = params.text_document.uri
    found = _name_at(ls, uri, params.position)
    if found is None:
        return []
    index, name = found
    return [
        _location(ls, uri, n)
        for n in index.same(name)
        if params.context.include_declaration or not n.definition
    ]


@server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
def _prepare_rename(ls: SpecServer, params: lsp.PrepareRenameParams) -> lsp.Range | None:
    found = _name_at(ls, params.text_document.uri, params.position)
    return None if found is None else _name_range(ls, params.text_document.uri, found[1])


@server.feature(lsp.TEXT_DOCUMENT_RENAME)
def _rename(ls: SpecServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
    uri = params.text_document.uri
    found = _name_at(ls, uri, params.position)
    if found is None:
        return None
    index, name = found
    new = params.new_name
    rule, words = _NAME_RULES[name.kind]
    if not rule.fullmatch(new) or plain_scalar(new) != new:
        raise ValueError(f"'{new}' is not a {name.kind} name: {words}")
    if new != name.name and any(
        n.definition and (n.kind, n.scope, n.name) == (name.kind, name.scope, new)
        for n in index.names
    ):
        raise ValueError(f"'{new}' is taken: another {name.kind} here has that name")
    edits = [lsp.TextEdit(range=_name_range(ls, uri, n), new_text=new) for n in index.same(name)]
    return lsp.WorkspaceEdit(changes={uri: edits})


_NAME_RULES = {
    "node": (LAYER_NAME, "letters, digits, '_' and '-', not starting with '-'"),
    "block": (BLOCK_NAME, "letters, digits and '_', not starting with a digit"),
    "param": (PARAM_NAME, "a letter, then letters, digits and '_'"),
}
"""What each kind of name may be (as validation checks it), in words for a refusal."""


def _enclosing(analysis: Analysis, line: int, tables: Sequence[tuple[Any, ...]]) -> Any:
    """The innermost of ``tables`` (paths) whose text holds the 0-based ``line``."""
    source = analysis.source
    best = None
    if source is None:
        return None
    for path in tables:
        start = source.keys.get(path) or source.values.get(path)
        end = source.value_ends.get(path)
        inside = start is not None and end is not None and start[0] - 1 <= line <= end[0] - 1
        if inside and (best is None or len(path) > len(best)):
            best = path
    return best


@server.feature(
    lsp.TEXT_DOCUMENT_COMPLETION,
    lsp.CompletionOptions(trigger_characters=["$", "[", ",", " "]),
)
def _completion(ls: SpecServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    uri = params.text_document.uri
    doc = ls.document(uri)
    analysis = ls.names(uri)
    line, col = ls.server_position(doc, params.position)
    before = doc.lines[line][:col] if line < len(doc.lines) else ""
    before = before.rstrip("\r\n")[-256:]  # what is typed on this line, near the cursor
    items: list[lsp.CompletionItem] = []
    index = analysis.index
    if _PARAM.search(before):
        block = _enclosing(analysis, line, [("blocks", b) for b in index.blocks])
        names = {
            n.name: n.scope
            for n in index.names
            if n.kind == "param" and n.definition and n.scope in ((), block)
        }
        items = [
            lsp.CompletionItem(
                label=name,
                kind=lsp.CompletionItemKind.Variable,
                detail=f"parameter of block '{scope[1]}'" if scope else "model parameter",
            )
            for name, scope in names.items()
        ]
    elif _IN_INPUT.search(before):
        graph = _enclosing(analysis, line, list(index.graphs))
        if graph is not None:
            # A node reads the graph's inputs and the nodes before it.
            here = [
                n.name
                for n in index.names
                if n.kind == "node" and n.definition and n.scope == graph and n.start[0] <= line + 1
            ]
            readable = index.graphs[graph]
            if here and here[-1] in readable:
                readable = readable[: readable.index(here[-1])]
            items = [
                lsp.CompletionItem(
                    label=name, kind=lsp.CompletionItemKind.Reference, detail="graph node"
                )
                for name in readable
            ]
    elif _IN_TYPE.search(before):
        items = [
            lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Class, detail="block")
            for name in index.blocks
        ]
    return lsp.CompletionList(is_incomplete=False, items=items)


# -- outline and quick fixes -----------------------------------------------------------------

_SYMBOL_KINDS = {
    "container": lsp.SymbolKind.Module,
    "layer": lsp.SymbolKind.Field,
    "block": lsp.SymbolKind.Class,
    "section": lsp.SymbolKind.Namespace,
}


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def _symbols(ls: SpecServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    uri = params.text_document.uri
    doc = ls.document(uri)
    analysis = ls.current(uri)
    lines = doc.lines

    def symbol(o: Outline) -> lsp.DocumentSymbol:
        def span(a: tuple[int, int], b: tuple[int, int]) -> lsp.Range:
            return ls.client_range(doc, ((a[0] - 1, a[1] - 1), (b[0] - 1, b[1] - 1)), lines)

        whole = span(o.start, o.end)
        chosen = span(*o.selection)
        return lsp.DocumentSymbol(
            name=o.name or "-",
            detail=o.detail,
            kind=_SYMBOL_KINDS[o.kind],
            range=whole,
            selection_range=chosen,
            children=[symbol(c) for c in o.children],
        )

    return [symbol(o) for o in analysis.index.outline]


@server.feature(
    lsp.TEXT_DOCUMENT_CODE_ACTION,
    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]),
)
def _code_actions(ls: SpecServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    doc = ls.document(uri)
    analysis = ls.current(uri)
    actions = []
    lines = doc.lines
    for problem in analysis.problems:
        where = ls.client_range(doc, problem.range, lines)
        if not problem.suggestions or not _overlaps(where, params.range):
            continue
        diagnostic = next(
            (
                d
                for d in params.context.diagnostics
                if d.range == where and d.message == problem.message
            ),
            None,
        )
        for i, suggestion in enumerate(problem.suggestions):
            actions.append(
                lsp.CodeAction(
                    title=f"Change to '{suggestion}'",
                    kind=lsp.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic] if diagnostic else None,
                    is_preferred=i == 0,
                    edit=lsp.WorkspaceEdit(
                        changes={uri: [lsp.TextEdit(range=where, new_text=suggestion)]}
                    ),
                )
            )
    return actions


def _overlaps(a: lsp.Range, b: lsp.Range) -> bool:
    def key(p: lsp.Position) -> tuple[int, int]:
        return p.line, p.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


def create_server() -> SpecServer:
    return server


def main() -> int:
    """Serve over stdin and stdout until the client says exit."""
    try:
        server.start_io()
    finally:
        server.counts.close()
    return 0
