"""specnet's JSON Schema as an editor sees it: the real yaml-language-server, over LSP.

The schema (``schemas/specnet.schema.json``) is what VS Code, Neovim, Helix, ... use to check
spec files while they are typed, through the modeline every example starts with::

    # yaml-language-server: $schema=../schemas/specnet.schema.json

These tests open documents that carry that modeline in the pinned server
(``tests/editor/package-lock.json``) and check the diagnostics and completions a user gets.
The server is installed once per lock file into ``$XDG_CACHE_HOME/specnet/editor-<hash>``
(``~/.cache`` by default, ``$SPECNET_CACHE`` if set) with ``npm ci``; Node.js and npm must
be on PATH. To update the server: ``cd tests/editor && npm install --save-exact
yaml-language-server@X.Y.Z`` and commit both files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _lsp import LspClient, yaml_settings

REPO = Path(__file__).resolve().parents[1]
EDITOR = REPO / "tests" / "editor"
LOCK = EDITOR / "package-lock.json"
SCHEMA = REPO / "schemas" / "specnet.schema.json"
EXAMPLES = REPO / "examples"
SERVER_BIN = Path("node_modules", "yaml-language-server", "bin", "yaml-language-server")
NPM_TIMEOUT = 600

# Test documents are placed (never written) beside the examples, with their modeline.
DOC_PATH = EXAMPLES / "_editor_test.yaml"
MODELINE = "# yaml-language-server: $schema=../schemas/specnet.schema.json\n"

Diagnostic = dict[str, Any]


# -- the server -------------------------------------------------------------------------


def _cache_root() -> Path:
    if os.environ.get("SPECNET_CACHE"):
        return Path(os.environ["SPECNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "specnet"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: the editor tests run yaml-language-server, which needs "
            f"Node.js and npm (CI installs them; locally e.g. `apt-get install nodejs npm`)",
            pytrace=False,
        )
    return path


def install_server() -> Path:
    """The pinned server's entry point, installed with ``npm ci`` on first use."""
    node_dir = _cache_root() / f"editor-{hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]}"
    server = node_dir / SERVER_BIN

    def ready() -> bool:
        return (node_dir / ".install-ok").is_file() and server.is_file()

    if ready():
        return server
    npm = _tool("npm")
    node_dir.parent.mkdir(parents=True, exist_ok=True)
    # Install beside the target and rename, so that a half-finished install is never used
    # and parallel test runs do not trip over each other.
    tmp = Path(tempfile.mkdtemp(prefix=f"{node_dir.name}.", dir=node_dir.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(EDITOR / name, tmp / name)
        command = [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(tmp)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(command)}` took more than {NPM_TIMEOUT} s", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        (tmp / ".install-ok").touch()
        if not ready():
            shutil.rmtree(node_dir, ignore_errors=True)  # a broken earlier install
            with contextlib.suppress(OSError):  # another run finished first
                tmp.rename(node_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return server


@pytest.fixture(scope="session")
def lsp() -> Iterator[LspClient]:
    """One yaml-language-server for the whole session."""
    server = install_server()
    command = [_tool("node"), str(server), "--stdio"]
    with LspClient(command, root=REPO, settings=yaml_settings()) as client:
        yield client


@pytest.fixture(scope="session")
def schema() -> Path:
    if not SCHEMA.is_file():
        pytest.fail(
            f"{SCHEMA.relative_to(REPO)} does not exist: the editor tests check the published "
            f"JSON Schema, which must be generated and committed",
            pytrace=False,
        )
    return SCHEMA


def diagnose(lsp: LspClient, body: str) -> list[Diagnostic]:
    """The diagnostics for a spec ``body`` (written without its modeline)."""
    return lsp.diagnostics(MODELINE + body, path=DOC_PATH)


def complete(lsp: LspClient, body: str, marker: str = "|") -> list[str]:
    """Completion labels at ``marker`` in ``body`` (written without its modeline)."""
    text = MODELINE + body
    offset = text.index(marker)
    text = text[:offset] + text[offset + len(marker) :]
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return lsp.completion(text, line, column, path=DOC_PATH)


def line_of(body: str, needle: str) -> int:
    """The 0-based line of the only occurrence of ``needle``, counting the modeline."""
    lines = [i for i, text in enumerate((MODELINE + body).splitlines()) if needle in text]
    assert len(lines) == 1, f"{needle!r} should occur once in the test document"
    return lines[0]


def show(diagnostics: list[Diagnostic]) -> str:
    """Diagnostics as an editor shows them: 1-based line:column, message."""
    return (
        "\n".join(
            f"  {d['range']['start']['line'] + 1}:{d['range']['start']['character'] + 1}: "
            f"{d['message']}"
            for d in diagnostics
        )
        or "  (none)"
    )


def assert_flagged(diagnostics: list[Diagnostic], line: int, *words: str) -> Diagnostic:
    """Some diagnostic starts on ``line`` and names each of ``words``; none is elsewhere."""
    on_line = [d for d in diagnostics if d["range"]["start"]["line"] == line]
    elsewhere = [d for d in diagnostics if d["range"]["start"]["line"] != line]
    matching = [d for d in on_line if all(w in d["message"] for w in words)]
    assert matching and not elsewhere, (
        f"expected a diagnostic on line {line + 1} naming {', '.join(map(repr, words))}; "
        f"got:\n{show(diagnostics)}"
    )
    return matching[0]


# -- the pinned server ------------------------------------------------------------------


def test_server_is_the_pinned_version(lsp: LspClient) -> None:
    lock = json.loads(LOCK.read_text())
    pinned = lock["packages"]["node_modules/yaml-language-server"]["version"]
    declared = json.loads((EDITOR / "package.json").read_text())["dependencies"]
    assert declared["yaml-language-server"] == pinned, "package.json must pin an exact version"
    assert lsp.server_info.get("version") == pinned


# -- valid files --------------------------------------------------------------------------

VALID = {
    "sequential": """\
version: 1
name: lenet
input: [1, 28, 28]
model:
  type: Sequential
  layers:
    - {type: Conv2d, out_channels: 6, kernel_size: 5, padding: 2}
    - ReLU
    - type: Conv2d
      out_channels: 16
      kernel_size: [3, 3]
      stride: 1
      bias: false
      repeat: 2
    - BatchNorm2d
    - Flatten
    - {type: Linear, out_features: 10}
""",
    "named-layers": """\
input: [8]
model:
  type: Sequential
  layers:
    hidden: {type: Linear, out_features: 16}
    act: ReLU
    head:
      type: Sequential
      layers:
        - {type: Dropout, p: 0.5}
        - {type: Linear, in_features: 16, out_features: 2}
""",
    "spec-format-blocks": """\
input: [3, 32, 32]
blocks:
  ConvBNReLU:
    params: {channels: int, stride: 1}       # a type name means required; a value is a default
    body:
      type: Sequential
      layers:
        - {type: Conv2d, out_channels: $channels, kernel_size: 3, stride: $stride, padding: 1, bias: false}
        - BatchNorm2d
        - ReLU
model:
  type: Sequential
  layers:
    - {type: ConvBNReLU, channels: 32}
    - {type: ConvBNReLU, channels: 64, stride: 2, repeat: 3}
""",
}


@pytest.mark.parametrize("body", VALID.values(), ids=list(VALID))
def test_valid_spec_has_no_diagnostics(lsp: LspClient, schema: Path, body: str) -> None:
    diagnostics = diagnose(lsp, body)
    assert not diagnostics, f"a valid spec is flagged:\n{show(diagnostics)}"


EXAMPLE_FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.fixture(scope="session")
def example_diagnostics(lsp: LspClient, schema: Path) -> dict[Path, list[Diagnostic]]:
    """Diagnostics for every example, opened at its own path, all in one batch."""
    texts = [(path.read_text(encoding="utf-8"), path) for path in EXAMPLE_FILES]
    return dict(zip(EXAMPLE_FILES, lsp.diagnostics_many(texts), strict=True))


@pytest.mark.parametrize(
    "path", EXAMPLE_FILES, ids=[str(p.relative_to(EXAMPLES)) for p in EXAMPLE_FILES]
)
def test_example_has_no_diagnostics(
    example_diagnostics: dict[Path, list[Diagnostic]], path: Path
) -> None:
    assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema="), (
        f"{path.relative_to(REPO)} should start with the schema modeline"
    )
    diagnostics = example_diagnostics[path]
    assert not diagnostics, f"{path.relative_to(REPO)} is flagged:\n{show(diagnostics)}"


# -- diagnostics, each on the line of the mistake -------------------------------------------

HEAD = """\
input: [1, 28, 28]
model:
  type: Sequential
  layers:
"""


def test_wrong_value_type(lsp: LspClient, schema: Path) -> None:
    body = HEAD + '    - type: Conv2d\n      out_channels: 6\n      kernel_size: "three"\n'
    found = assert_flagged(diagnose(lsp, body), line_of(body, "kernel_size"))
    value_column = (MODELINE + body).splitlines()[found["range"]["start"]["line"]].index('"three"')
    assert found["range"]["start"]["character"] == value_column, "should point at the value"


def test_wrong_value_type_in_flow_mapping(lsp: LspClient, schema: Path) -> None:
    body = HEAD + "    - ReLU\n    - {type: Linear, out_features: ten}\n"
    assert_flagged(diagnose(lsp, body), line_of(body, "out_features"))


def test_unknown_argument(lsp: LspClient, schema: Path) -> None:
    body = (
        HEAD
        + "    - type: Conv2d\n      out_channels: 6\n      kernal_size: 3\n      kernel_size: 3\n"
    )
    assert_flagged(diagnose(lsp, body), line_of(body, "kernal_size"), "kernal_size")


def test_unknown_argument_in_nested_container(lsp: LspClient, schema: Path) -> None:
    body = HEAD + (
        "    - type: Sequential\n"
        "      layers:\n"
        "        - {type: Linear, out_features: 3, out_channels: 3}\n"
    )
    assert_flagged(diagnose(lsp, body), line_of(body, "out_channels"), "out_channels")


def test_missing_required_argument(lsp: LspClient, schema: Path) -> None:
    body = HEAD + "    - ReLU\n    - type: Conv2d\n      kernel_size: 3\n"
    assert_flagged(diagnose(lsp, body), line_of(body, "type: Conv2d"), "out_channels")


@pytest.mark.parametrize("typo", ["Conv2dd", "Conv2 d"])
def test_unknown_layer_type_lists_valid_names(lsp: LspClient, schema: Path, typo: str) -> None:
    body = HEAD + f"    - ReLU\n    - type: {typo}\n      out_channels: 6\n      kernel_size: 3\n"
    found = assert_flagged(diagnose(lsp, body), line_of(body, typo), "Conv2d", "Linear", "ReLU")
    # What a schema of one branch per type (oneOf of `type: {const: X}`) says instead.
    assert "Value must be" not in found["message"]


def test_unknown_bare_layer_lists_valid_names(lsp: LspClient, schema: Path) -> None:
    body = HEAD + "    - Relu\n"
    assert_flagged(diagnose(lsp, body), line_of(body, "Relu"), "ReLU", "Flatten")


# -- completion ---------------------------------------------------------------------------


def test_completion_offers_layer_types(lsp: LspClient, schema: Path) -> None:
    labels = complete(lsp, HEAD + "    - ReLU\n    - type: |\n")
    assert {"Conv2d", "Linear", "ReLU", "Sequential", "BatchNorm2d"} <= set(labels), labels


def test_completion_offers_layer_types_for_the_model(lsp: LspClient, schema: Path) -> None:
    labels = complete(lsp, "input: [1, 28, 28]\nmodel:\n  type: |\n")
    assert {"Conv2d", "Linear", "ReLU", "Sequential"} <= set(labels), labels


def test_completion_offers_the_arguments_of_the_layer_type(lsp: LspClient, schema: Path) -> None:
    labels = complete(lsp, HEAD + "    - type: Conv2d\n      |\n")
    assert {"out_channels", "kernel_size", "stride", "padding"} <= set(labels), labels
    assert "out_features" not in labels, labels


def test_completion_skips_arguments_already_given(lsp: LspClient, schema: Path) -> None:
    labels = complete(lsp, HEAD + "    - type: Linear\n      out_features: 3\n      |\n")
    assert "bias" in labels, labels
    assert not {"out_features", "kernel_size"} & set(labels), labels


def test_completion_offers_only_the_arguments_of_that_exact_type(
    lsp: LspClient, schema: Path
) -> None:
    # While completing, yaml-language-server takes a string value for a prefix still being
    # typed, so `if: {properties: {type: {const: EmbeddingBag}}}` holds for `type: Embedding`
    # and EmbeddingBag's arguments are offered too. The schema's condition is a pattern,
    # matched exactly.
    labels = complete(lsp, HEAD + "    - type: Embedding\n      |\n")
    assert {"num_embeddings", "embedding_dim"} <= set(labels), labels
    assert not {"mode", "include_last_offset"} & set(labels), f"EmbeddingBag's offered: {labels}"


def test_a_type_that_is_not_a_string_selects_no_layer(lsp: LspClient, schema: Path) -> None:
    body = HEAD + "    - {type: 3, out_channels: 6}\n"
    diagnostics = diagnose(lsp, body)
    line = line_of(body, "type: 3")
    assert diagnostics and all(d["range"]["start"]["line"] == line for d in diagnostics), show(
        diagnostics
    )
    assert not any("out_channels" in d["message"] for d in diagnostics), show(diagnostics)


# -- keys offered only where they are valid -----------------------------------------------

GRAPH = """\
input: [1, 28, 28]
model:
  type: Graph
  nodes:
    a: Flatten
    b:
      type: Linear
      out_features: 3
      |
"""


def test_graph_keys_are_offered_only_on_graph_nodes(lsp: LspClient, schema: Path) -> None:
    in_sequential = complete(lsp, HEAD + "    - type: MultiheadAttention\n      |\n")
    assert "embed_dim" in in_sequential, in_sequential
    assert not {"input", "call"} & set(in_sequential), in_sequential
    in_graph = complete(lsp, GRAPH)
    assert {"input", "bias"} <= set(in_graph), in_graph
    mha = complete(lsp, GRAPH.replace("type: Linear", "type: MultiheadAttention"))
    assert {"input", "call"} <= set(mha), mha


def test_input_in_a_sequential_is_flagged(lsp: LspClient, schema: Path) -> None:
    body = HEAD + "    - {type: Linear, out_features: 3, input: x}\n"
    assert_flagged(diagnose(lsp, body), line_of(body, "input: x"), "input")


# -- hover ----------------------------------------------------------------------------------


def hover(lsp: LspClient, body: str, needle: str, column: int) -> str:
    """The hover text at ``column`` of the line holding ``needle``."""
    return lsp.hover(MODELINE + body, line_of(body, needle), column, path=DOC_PATH)


HOVERED = """\
input: [1, 28, 28]
model:
  type: Sequential
  layers:
    - type: Conv2d
      out_channels: 6
      kernel_size: 3
    - type: Graph
      nodes:
        a: {type: ReLU}
        b:
          type: Linear
          out_features: 3
          input: a
"""


@pytest.mark.parametrize(
    ("needle", "column", "heading", "says"),
    [
        ("type: Sequential", 10, "Sequential", "one after another"),
        ("type: Conv2d", 14, "Conv2d", "2D convolution"),
        ("out_channels: 6", 8, "Conv2d", "channels produced by the convolution"),
        ("type: Linear", 18, "Linear", "affine linear transformation"),
    ],
)
def test_hover_names_the_layer(
    lsp: LspClient, schema: Path, needle: str, column: int, heading: str, says: str
) -> None:
    text = hover(lsp, HOVERED, needle, column)
    assert text.splitlines()[0] == f"#### {heading}", text[:300]
    assert says in text, text[:300]


# -- strict validators ------------------------------------------------------------------------


def test_ajv_strict_mode_accepts_the_schema(schema: Path) -> None:
    ajv = install_server().parents[2] / "ajv-cli" / "dist" / "index.js"
    done = subprocess.run(
        [_tool("node"), str(ajv), "compile", "--spec=draft7", "--strict=true", "-s", str(schema)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout + done.stderr
