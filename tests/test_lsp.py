"""``specnet lsp`` driven over LSP (stdio, JSON-RPC) by the test client in ``_lsp.py``, as an
editor drives it: diagnostics as the user types, inlay shapes, hover, completion, names, the
outline and quick fixes. The analysis behind the diagnostics is also checked against
``specnet.validate`` on every example and bad spec of the repository: they must agree."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _lsp import LspClient, LspError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import specnet
from specnet._api import check
from specnet._front.errors import SpecError
from specnet._lsp.analysis import analyze

REPO = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-m", "specnet", "lsp"]

LENET = """\
version: 1
input: [3, 32, 32]
model:
  type: Sequential
  layers:
    conv: {type: Conv2d, out_channels: 6, kernel_size: 3}
    pool: {type: MaxPool2d, kernel_size: 2}
    flat: Flatten
    fc: {type: Linear, out_features: 10}
"""

GRAPH = """\
version: 1
input: [8]
blocks:
  Dense:
    params: {width: int}
    body:
      type: Sequential
      layers:
        - {type: Linear, out_features: $width}
        - ReLU
model:
  type: Graph
  nodes:
    a: {type: Dense, width: 16}
    b: {type: Linear, out_features: 16, input: input}
    sum: {type: Add, input: [a, b]}
    head: {type: Linear, out_features: 2}
  output: head
"""


@pytest.fixture(scope="module")
def client() -> Iterator[LspClient]:
    with LspClient(SERVER, root=REPO, settings=None, timeout=60) as c:
        yield c


SPEC_PATH = REPO / "net.specnet.yaml"  # a spec by its name (never written)


def _open(client: LspClient, text: str) -> tuple[str, list[dict[str, Any]]]:
    uri = client.open_document(text, path=SPEC_PATH)
    return uri, client.published(uri, version=1)["diagnostics"]


def _hints(client: LspClient, uri: str) -> list[dict[str, Any]]:
    result = client.request(
        "textDocument/inlayHint",
        {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 999, "character": 0}},
        },
    )
    return list(result or [])


def _at(client: LspClient, method: str, uri: str, line: int, character: int, **more: Any) -> Any:
    return client.request(
        method,
        {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, **more},
    )


def _text_of(text: str, r: dict[str, Any]) -> str:
    lines = text.splitlines()
    assert r["start"]["line"] == r["end"]["line"]
    return lines[r["start"]["line"]][r["start"]["character"] : r["end"]["character"]]


def _apply(text: str, edits: list[dict[str, Any]]) -> str:
    lines = text.splitlines(keepends=True)
    for e in sorted(
        edits,
        key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]),
        reverse=True,
    ):
        r = e["range"]
        line = lines[r["start"]["line"]]
        lines[r["start"]["line"]] = (
            line[: r["start"]["character"]] + e["newText"] + line[r["end"]["character"] :]
        )
    return "".join(lines)


def test_the_server_names_itself_and_offers_its_features(client: LspClient) -> None:
    assert client.server_info["name"] == "specnet"
    assert client.server_info["version"] == specnet.__version__


def test_only_spec_files_are_analysed(client: LspClient) -> None:
    compose = "services:\n  web:\n    image: nginx\n"
    other = client.open_document(compose, path=REPO / "compose.yaml")
    named = client.open_document(compose, path=REPO / "compose.specnet.yaml")
    modeline = "# yaml-language-server: $schema=../schemas/specnet.schema.json\n" + compose
    bound = client.open_document(modeline, path=REPO / "examples" / "compose.yaml")
    try:
        assert client.published(other)["diagnostics"] == []
        assert (
            "unknown top-level key 'services'"
            in client.published(named)["diagnostics"][0]["message"]
        )
        assert (
            "unknown top-level key 'services'"
            in client.published(bound)["diagnostics"][0]["message"]
        )
    finally:
        for uri in (other, named, bound):
            client.close_document(uri)


def test_a_shape_error_is_reported_at_the_exact_value(client: LspClient) -> None:
    text = LENET.replace("kernel_size: 2}", "kernel_size: 40}")
    uri, diagnostics = _open(client, text)
    try:
        assert len(diagnostics) == 1
        d = diagnostics[0]
        assert d["severity"] == 1 and d["source"] == "specnet"
        assert "kernel_size 40 is larger than the padded input 30x30" in d["message"]
        assert d["range"]["start"]["line"] == 6
        assert _text_of(text, d["range"]) == "40"
    finally:
        client.close_document(uri)


def test_every_error_is_reported_at_once_with_key_and_value_ranges(client: LspClient) -> None:
    text = GRAPH.replace("out_features: 16, input", "out_featurs: 16, input").replace(
        "[a, b]", "[a, bb]"
    )
    uri, diagnostics = _open(client, text)
    try:
        found = {_text_of(text, d["range"]): d["message"] for d in diagnostics}
        assert set(found) == {"out_featurs", "bb"}, found
        assert "did you mean 'out_features'" in found["out_featurs"]
        assert "did you mean 'b'" in found["bb"]
    finally:
        client.close_document(uri)


def test_a_syntax_error_is_a_diagnostic_not_a_crash(client: LspClient) -> None:
    uri, diagnostics = _open(client, "version: 1\ninput: [3, 4\nmodel: ReLU\n")
    try:
        assert len(diagnostics) == 1 and diagnostics[0]["code"] == "syntax"
        assert diagnostics[0]["range"]["start"]["line"] == 1
        assert _hints(client, uri) == []
    finally:
        client.close_document(uri)


def test_the_last_version_wins_when_changes_come_quickly(client: LspClient) -> None:
    uri, first = _open(client, LENET)
    assert first == []
    bad = LENET.replace("kernel_size: 3}", "kernel_size: 300}")
    try:
        for version in range(2, 14):  # typing: changes faster than the pause, the last bad
            client.change_document(uri, bad if version % 2 else LENET, version)
        published = client.published_until(uri, version=13)
        assert [_text_of(bad, d["range"]) for d in published[-1]["diagnostics"]] == ["300"]
        # Each publish describes its own version (an odd one has the error), in order, and
        # none describes a version older than one already published.
        versions = [p["version"] for p in published]
        assert versions == sorted(set(versions))
        for p in published:
            assert len(p["diagnostics"]) == p["version"] % 2
        assert client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
        assert client.published_now(uri) == []
    finally:
        client.close_document(uri)


def test_inlay_hints_show_each_output_shape_and_the_inferred_arguments(
    client: LspClient,
) -> None:
    uri, _ = _open(client, LENET)
    try:
        hints = _hints(client, uri)
        by_line: dict[int, list[str]] = {}
        for h in hints:
            by_line.setdefault(h["position"]["line"], []).append(h["label"])
        assert by_line[5] == ["in_channels: 3", "-> [6, 30, 30]"]
        assert by_line[6] == ["-> [6, 15, 15]"]
        assert by_line[7] == ["-> [1350]"]
        assert by_line[8] == ["in_features: 1350", "-> [10]"]
        conv = [h for h in hints if h["position"]["line"] == 5]
        assert conv[0]["position"]["character"] == len(LENET.splitlines()[5])  # line's end
    finally:
        client.close_document(uri)


def test_inlay_hints_keep_the_shapes_before_a_shape_error(client: LspClient) -> None:
    text = LENET.replace("kernel_size: 2}", "kernel_size: 40}")
    uri, _ = _open(client, text)
    try:
        labels = [h["label"] for h in _hints(client, uri)]
        assert labels == ["in_channels: 3", "-> [6, 30, 30]"]
    finally:
        client.close_document(uri)


def test_a_block_use_and_its_body_get_the_shapes_of_its_uses(client: LspClient) -> None:
    uri, _ = _open(client, GRAPH)
    try:
        by_line = {}
        for h in _hints(client, uri):
            by_line.setdefault(h["position"]["line"], []).append(h["label"])
        assert by_line[13] == ["-> [16]"]  # a: {type: Dense, width: 16}
        assert by_line[8] == ["in_features: 8", "-> [16]"]  # the Linear in the block's body
        assert by_line[15] == ["-> [16]"]  # sum
        assert by_line[16] == ["in_features: 16", "-> [2]"]
    finally:
        client.close_document(uri)


def test_hover_gives_shape_parameters_macs_and_docs(client: LspClient) -> None:
    uri, _ = _open(client, LENET)
    try:
        text = ""
        deadline = time.monotonic() + 120  # the counts come from a worker that imports torch
        while time.monotonic() < deadline:
            text = _at(client, "textDocument/hover", uri, 5, 6)["contents"]["value"]
            if "Parameters" in text:
                break
            time.sleep(0.1)
        assert "**Conv2d**" in text
        assert "Output: `[6, 30, 30]`" in text
        assert "in_channels=3 (inferred)" in text
        assert "Parameters: 168" in text  # 6 * 3 * 3 * 3 + 6, as torch counts them
        assert "Multiply-accumulates per sample: 145,800" in text  # 6*30*30 outputs * 27
        assert "2D convolution" in text
    finally:
        client.close_document(uri)


def test_completion_offers_graph_nodes_blocks_and_parameters(client: LspClient) -> None:
    text = GRAPH.replace("[a, b]", "[a, ]").replace(
        "{type: Dense, width: 16}", "{type: , width: 16}"
    )
    text = text.replace("out_features: $width}", "out_features: $}")
    uri = client.open_document(text, path=SPEC_PATH)
    try:
        lines = text.splitlines()

        def labels(line: int, before: str) -> list[str]:
            col = lines[line].index(before) + len(before)
            result = _at(
                client, "textDocument/completion", uri, line, col, context={"triggerKind": 1}
            )
            return [i["label"] for i in result["items"]]

        assert labels(15, "input: [a, ") == ["input", "a", "b"]  # what `sum` may read
        assert labels(13, "type: ") == ["Dense"]
        assert labels(8, "out_features: $") == ["width"]
    finally:
        client.close_document(uri)


def test_definition_references_and_rename(client: LspClient) -> None:
    uri, _ = _open(client, GRAPH)
    try:
        lines = GRAPH.splitlines()
        use = lines[13].index("Dense")
        found = _at(client, "textDocument/definition", uri, 13, use + 2)
        assert found["range"]["start"] == {"line": 3, "character": 2}
        ref = lines[15].index("b]")
        found = _at(client, "textDocument/definition", uri, 15, ref)
        assert found["range"]["start"] == {"line": 14, "character": 4}
        param = lines[8].index("$width") + 1
        found = _at(client, "textDocument/definition", uri, 8, param + 1)
        assert found["range"]["start"] == {"line": 4, "character": lines[4].index("width")}
        refs = _at(
            client, "textDocument/references", uri, 14, 4, context={"includeDeclaration": True}
        )
        assert sorted(r["range"]["start"]["line"] for r in refs) == [14, 15]
        edit = _at(client, "textDocument/rename", uri, 3, 3, newName="Wide")
        renamed = _apply(GRAPH, edit["changes"][uri])
        assert renamed.count("Wide") == 2 and "Dense" not in renamed
        assert specnet.validate(renamed) == []
        edit = _at(client, "textDocument/rename", uri, 15, ref, newName="skip")
        renamed = _apply(GRAPH, edit["changes"][uri])
        assert "skip: {type: Linear" in renamed and "[a, skip]" in renamed
        assert specnet.validate(renamed) == []
        edit = _at(client, "textDocument/rename", uri, 8, param, newName="features")
        renamed = _apply(GRAPH, edit["changes"][uri])
        assert "{features: int}" in renamed and "$features}" in renamed
        assert specnet.validate(renamed.replace("width: 16}", "features: 16}")) == []
        with pytest.raises(LspError, match="not a node name"):
            _at(client, "textDocument/rename", uri, 15, ref, newName="two words")
    finally:
        client.close_document(uri)


def test_document_symbols_outline_containers_nodes_and_blocks(client: LspClient) -> None:
    uri, _ = _open(client, GRAPH)
    try:
        symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})

        def tree(s: dict[str, Any]) -> Any:
            return (s["name"], s.get("detail"), [tree(c) for c in s.get("children", [])])

        assert [tree(s) for s in symbols] == [
            (
                "blocks",
                "",
                [("Dense", "", [("body", "Sequential", [("0", "Linear", []), ("1", "ReLU", [])])])],
            ),
            (
                "model",
                "Graph",
                [
                    ("a", "Dense", []),
                    ("b", "Linear", []),
                    ("sum", "Add", []),
                    ("head", "Linear", []),
                ],
            ),
        ]
    finally:
        client.close_document(uri)


def test_a_quick_fix_applies_the_did_you_mean(client: LspClient) -> None:
    text = LENET.replace("type: Conv2d", "type: Conv2").replace(
        "type: Linear, out_features", "type: Linear, out_featurs"
    )
    uri, diagnostics = _open(client, text)
    try:
        assert len(diagnostics) == 2
        fixed = text
        for d in diagnostics:
            actions = client.request(
                "textDocument/codeAction",
                {
                    "textDocument": {"uri": uri},
                    "range": d["range"],
                    "context": {"diagnostics": [d]},
                },
            )
            preferred = [a for a in actions if a.get("isPreferred")]
            assert len(preferred) == 1 and preferred[0]["kind"] == "quickfix"
            fixed = _apply(fixed, preferred[0]["edit"]["changes"][uri])
        assert fixed == LENET
    finally:
        client.close_document(uri)


def test_the_server_runs_without_torch() -> None:
    # torch blocked: importing it anywhere in the server would fail the handshake or analysis.
    code = "import sys; sys.modules['torch'] = None; from specnet._cli.main import main; sys.exit(main(['lsp']))"
    with LspClient([sys.executable, "-c", code], root=REPO, settings=None, timeout=60) as c:
        uri, diagnostics = _open(c, LENET.replace("kernel_size: 2}", "kernel_size: 40}"))
        assert len(diagnostics) == 1
        hover = _at(c, "textDocument/hover", uri, 5, 6)["contents"]["value"]
        assert "Output: `[6, 30, 30]`" in hover
        assert "counted where torch is installed" in hover


def test_a_missing_pygls_is_named_with_its_install_line() -> None:
    code = "import sys; sys.modules['pygls'] = None; from specnet._cli.main import main; sys.exit(main(['lsp']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pygls" in done.stderr and "specnet[lsp]" in done.stderr
    assert "Traceback" not in done.stderr


def _agree(got: list[tuple[int, int, str]], expected: list[tuple[int, int, str]]) -> None:
    """The same problems on the same lines; each range starts where validate's position is,
    or inside that value (an unknown ``$name`` is marked alone, not the whole value)."""
    by_line = sorted((line, msg, col) for line, col, msg in got)
    want = sorted((line, msg, col) for line, col, msg in expected)
    assert [(line, msg) for line, msg, _ in by_line] == [(line, msg) for line, msg, _ in want]
    for (_, msg, col), (_, _, at) in zip(by_line, want, strict=True):
        assert col == at or (col > at and "'$" in msg), msg


def _spec_files() -> list[Path]:
    found = [
        *REPO.glob("examples/*.yaml"),
        *REPO.glob("examples/zoo/*.yaml"),
        *REPO.glob("tests/bad/*.yaml"),
    ]
    # An editor hands the server decoded text: a file that is not UTF-8 never reaches it.
    return sorted(p for p in found if _is_utf8(p))


def _is_utf8(path: Path) -> bool:
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("path", _spec_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_server_reports_what_validate_reports(path: Path) -> None:
    expected: list[tuple[int, int, str]] = []
    try:
        check(path)  # what specnet validate and specnet.validate run
    except SpecError as exc:
        expected = sorted(
            (
                (e.line or 1) - 1,
                (e.col or 1) - 1,
                e.msg + (" [" + "; ".join(e.notes) + "]" if e.notes else ""),
            )
            for e in exc.errors
        )
    text = path.read_text(encoding="utf-8")
    got = sorted(
        (p.range[0][0], p.range[0][1], p.message)
        for p in analyze(text, str(path)).problems
        if not p.warning
    )
    _agree(got, expected)
    assert len(specnet.validate(path)) == len(expected)


_TYPED = (REPO / "examples" / "resnet18.yaml").read_text(encoding="utf-8")


@example(cut=1028, drop=0, insert="#")  # a value turned into a comment: an empty value
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=len(_TYPED)),
    drop=st.integers(min_value=0, max_value=40),
    insert=st.sampled_from(["", "x", ":", "[", "{", "-", "$", " ", "\n", "'", "#"]),
)
def test_any_text_typed_on_the_way_is_analysed_as_validate_checks_it(
    cut: int, drop: int, insert: str
) -> None:
    # What an editor holds while a line is being typed: the text up to a point, some
    # characters gone, one stray character.
    text = _TYPED[:cut] + insert + _TYPED[cut + drop :]
    analysis = analyze(text)  # never raises
    expected: list[tuple[int, int, str]] = []
    try:
        check(text if "\n" in text else text + "\n")  # a one-line text is text, not a file
    except SpecError as exc:
        expected = sorted(
            (
                (e.line or 1) - 1,
                (e.col or 1) - 1,
                e.msg + (" [" + "; ".join(e.notes) + "]" if e.notes else ""),
            )
            for e in exc.errors
        )
    got = sorted(
        (p.range[0][0], p.range[0][1], p.message) for p in analysis.problems if not p.warning
    )
    _agree(got, expected)
    for p in analysis.problems:  # a range covers at least one character
        (sl, sc), (el, ec) = p.range
        assert (el, ec) > (sl, sc)


def test_closing_a_document_clears_its_diagnostics(client: LspClient) -> None:
    uri, diagnostics = _open(client, LENET.replace("kernel_size: 3}", "kernel_size: 300}"))
    assert len(diagnostics) == 1
    client.close_document(uri)
    assert client.published(uri)["diagnostics"] == []


def test_names_are_not_renamed_while_the_text_is_not_yaml(client: LspClient) -> None:
    uri, _ = _open(client, GRAPH)
    try:
        broken = GRAPH.replace("input: [a, b]", "input: [a, b")  # a bracket being typed
        client.change_document(uri, broken, 2)
        assert client.published(uri, version=2)["diagnostics"][0]["code"] == "syntax"
        edit = _at(client, "textDocument/rename", uri, 14, 4, newName="skip")
        assert edit is None  # the last good text's positions would land elsewhere
        assert _at(client, "textDocument/definition", uri, 15, 22) is None
    finally:
        client.close_document(uri)


def test_rename_refuses_names_that_would_break_the_spec(client: LspClient) -> None:
    uri, _ = _open(client, GRAPH)
    try:
        lines = GRAPH.splitlines()
        param = lines[4].index("width")
        for new, why in (
            ("a", "is taken"),  # another node of the graph
            ("true", "is not a node name"),  # YAML would read a boolean
            ("-x", "is not a node name"),
        ):
            with pytest.raises(LspError, match=why):
                _at(client, "textDocument/rename", uri, 14, 4, newName=new)
        with pytest.raises(LspError, match="is not a param name"):
            _at(client, "textDocument/rename", uri, 4, param, newName="my-width")
    finally:
        client.close_document(uri)


def test_columns_are_counted_in_utf16_as_clients_count_them(client: LspClient) -> None:
    text = LENET.replace("fc: {type: Linear,", 'fc: {type: Linear, "\U0001f642": 1,').replace(
        "out_features: 10", "out_featurs: 10"
    )
    uri, diagnostics = _open(client, text)
    try:
        line = text.splitlines()[8]
        prefix = line[: line.index("out_featurs")]
        [wrong] = [d for d in diagnostics if "out_featurs" in d["message"]]
        start = len(prefix.encode("utf-16-le")) // 2  # the emoji is two UTF-16 units
        assert wrong["range"]["start"] == {"line": 8, "character": start}
        assert wrong["range"]["end"] == {"line": 8, "character": start + len("out_featurs")}
    finally:
        client.close_document(uri)


def test_a_quick_fix_for_a_parameter_changes_only_its_name(client: LspClient) -> None:
    text = GRAPH.replace("out_features: $width}", "out_features: $widht * 2}")
    uri, diagnostics = _open(client, text)
    try:
        [d] = diagnostics
        assert _text_of(text, d["range"]) == "$widht"
        actions = client.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [d]}},
        )
        fixed = _apply(text, actions[0]["edit"]["changes"][uri])
        assert "out_features: $width * 2}" in fixed
        # the parameter is known now; what is left is the shape the expression gives
        [left] = specnet.validate(fixed)
        assert "Add inputs differ: [32] and [16]" in left
    finally:
        client.close_document(uri)
