"""``specnet lsp``: how long after a change the editor has its diagnostics, and memory.

    python bench/lsp.py [--lines 500] [--changes 40]

A spec of about ``--lines`` lines (blocks with parameters, a Graph with residual adds, a long
Sequential) is opened in ``specnet lsp`` over stdio, through the JSON-RPC client the tests use.
After the first analysis, each round changes one value and times, from sending
``textDocument/didChange`` to receiving that version's ``publishDiagnostics``, what an editor
waits. Changes alternate between a valid text and one with a shape error, so both paths count.
The figure includes the server's pause for more typing (``DEBOUNCE``), the transport and the
analysis; the analysis alone is timed in this process too, side by side. Memory is the
server's resident set (VmRSS, and its peak VmHWM) after the rounds; the parameter-count worker
(a separate process with torch, used by hovers) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _lsp import LspClient  # noqa: E402

from specnet._lsp.analysis import analyze  # noqa: E402
from specnet._lsp.server import DEBOUNCE  # noqa: E402

_HEAD = """\
version: 1
name: bench-lsp
input: [3, 64, 64]
blocks:
  ConvBNReLU:
    params: {channels: int, stride: 1}
    body:
      type: Sequential
      layers:
        - {type: Conv2d, out_channels: $channels, kernel_size: 3, stride: $stride, padding: 1, bias: false}
        - BatchNorm2d
        - {type: ReLU, inplace: true}
  Residual:
    params: {channels: int}
    body:
      type: Graph
      nodes:
        conv1: {type: Conv2d, out_channels: $channels, kernel_size: 3, padding: 1, bias: false}
        bn1: BatchNorm2d
        relu1: {type: ReLU, inplace: true}
        conv2: {type: Conv2d, out_channels: $channels, kernel_size: 3, padding: 1, bias: false}
        bn2: BatchNorm2d
        add: {type: Add, input: [bn2, input]}
        relu2: {type: ReLU, inplace: true}
      output: relu2
model:
  type: Sequential
  layers:
    stem: {type: ConvBNReLU, channels: 32}
"""

_STAGE = """\
    stage{i}:
      type: Sequential
      layers:
        - type: ConvBNReLU
          channels: {width}
          stride: 1
        - type: Residual
          channels: {width}
        - type: Graph
          nodes:
            a: {{type: Conv2d, out_channels: {width}, kernel_size: 1}}
            b: {{type: BatchNorm2d}}
            skip: {{type: Identity, input: input}}
            sum: {{type: Add, input: [b, skip]}}
            act: {{type: GELU}}
          output: act
        - {{type: Dropout, p: 0.1}}
"""

_TAIL = """\
    pool: {type: AdaptiveAvgPool2d, output_size: 1}
    flat: Flatten
    fc: {type: Linear, out_features: 10}
"""


def make_spec(lines: int) -> str:
    stages = []
    i = 0
    while True:
        text = _HEAD + "".join(stages) + _TAIL
        if len(text.splitlines()) >= lines:
            return text
        stages.append(_STAGE.format(i=i, width=32))
        i += 1


def _memory(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) // 1024
    return found


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            found += [int(p) for p in children.read_text().split()]
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=500)
    ap.add_argument("--changes", type=int, default=40)
    args = ap.parse_args()

    good = make_spec(args.lines)
    bad = good.replace("kernel_size: 1}", "kernel_size: 100}", 1)  # a shape error, one stage
    assert analyze(good).problems == [] and analyze(bad).problems, "the bench spec is wrong"
    print(f"command: python bench/lsp.py --lines {args.lines} --changes {args.changes}")
    print(
        f"machine: os.cpu_count() {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at "
        f"start; spec of {len(good.splitlines())} lines; server pause (DEBOUNCE) "
        f"{DEBOUNCE * 1000:.0f} ms"
    )
    waits: list[float] = []
    alone: list[float] = []
    with LspClient(
        [sys.executable, "-m", "specnet", "lsp"], root=ROOT, settings=None, timeout=120
    ) as client:
        uri = client.open_document(good, path=ROOT / "bench.specnet.yaml")  # never written
        client.published(uri, version=1)
        cpu_before = _cpu_seconds(client.pid)
        for version in range(2, args.changes + 2):
            text = bad if version % 2 else good
            start = time.perf_counter()
            client.change_document(uri, text, version)
            published = client.published(uri, version=version)
            waits.append(time.perf_counter() - start)
            assert bool(published["diagnostics"]) == bool(version % 2)
            start = time.perf_counter()  # the same analysis, in this process
            analyze(text)
            alone.append(time.perf_counter() - start)
        cpu = (_cpu_seconds(client.pid) - cpu_before) / args.changes
        server = _memory(client.pid)
        # A hover once the valid text rests: the parameter counts come from the worker.
        last = args.changes + 2
        client.change_document(uri, good, last)
        client.published(uri, version=last)
        position = {"line": len(good.splitlines()) - 1, "character": 6}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            hover = client.request(
                "textDocument/hover", {"textDocument": {"uri": uri}, "position": position}
            )
            if hover and "Parameters:" in hover["contents"]["value"]:
                break
            time.sleep(0.2)
        workers = [_memory(p) for p in _children(client.pid)]

    def ms(values: list[float], q: float) -> str:
        return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.0f}"

    print(
        f"\nchange -> publishDiagnostics over {len(waits)} changes: median "
        f"{statistics.median(waits) * 1000:.0f} ms, p90 {ms(waits, 90)} ms, max "
        f"{max(waits) * 1000:.0f} ms"
    )
    print(
        f"server CPU time per change: {cpu * 1000:.0f} ms (wall time above it is the pause, the "
        "transport, and waiting for a core on a shared machine)"
    )
    print(
        f"analysis alone (read, validate, infer; in this process): median "
        f"{statistics.median(alone) * 1000:.0f} ms, p90 {ms(alone, 90)} ms"
    )
    print(
        f"server memory: {server.get('VmRSS', 0)} MiB resident, peak {server.get('VmHWM', 0)} MiB"
    )
    for w in workers:
        print(
            f"parameter-count worker (torch): {w.get('VmRSS', 0)} MiB resident, peak "
            f"{w.get('VmHWM', 0)} MiB"
        )


if __name__ == "__main__":
    main()
