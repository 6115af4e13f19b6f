"""``specnet lsp`` in a real editor: Neovim, headless, with its built-in LSP client.

Neovim opens a spec with a shape error, starts ``specnet lsp`` through
``vim.lsp.start_client``, attaches it to the buffer and waits for the diagnostics; then it
asks for inlay hints through the same client and writes everything it received as JSON
(tests/editor/neovim.lua). Neovim 0.7 (Debian 12's) has no inlay-hint display of its own; the
request goes through its client all the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "editor" / "neovim.lua"

SPEC = """\
version: 1
input: [3, 32, 32]
model:
  type: Sequential
  layers:
    conv: {type: Conv2d, out_channels: 6, kernel_size: 3}
    pool: {type: MaxPool2d, kernel_size: 40}
    flat: Flatten
    fc: {type: Linear, out_features: 10}
"""


def test_neovim_shows_the_shape_error_and_the_shapes_before_it(tmp_path: Path) -> None:
    nvim = shutil.which("nvim")
    assert nvim is not None, "Neovim is needed (scripts/system-packages installs it)"
    spec = tmp_path / "net.specnet.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "received.json"
    env = {
        **os.environ,
        "SPECNET_NVIM_SPEC": str(spec),
        "SPECNET_NVIM_OUT": str(out),
        "SPECNET_NVIM_PYTHON": sys.executable,
        "XDG_STATE_HOME": str(tmp_path / "state"),  # Neovim's LSP log stays in the test's folder
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", f"luafile {SCRIPT}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.exists(), f"Neovim wrote nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    received = json.loads(out.read_text(encoding="utf-8"))
    assert received["errors"] == []
    assert received["capabilities"] == {"inlay_hint": True, "hover": True, "rename": True}
    [diagnostic] = received["diagnostics"]
    assert diagnostic["source"] == "specnet" and diagnostic["severity"] == 1
    assert "kernel_size 40 is larger than the padded input 30x30" in diagnostic["message"]
    line = SPEC.splitlines()[6]
    assert (diagnostic["lnum"], diagnostic["end_lnum"]) == (6, 6)
    assert line[diagnostic["col"] : diagnostic["end_col"]] == "40"
    hints = [(h["position"]["line"], h["label"]) for h in received["hints"]]
    assert hints == [(5, "in_channels: 3"), (5, "-> [6, 30, 30]")]
