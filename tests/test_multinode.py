"""Two machines, as the README starts them: two torchrun launchers (``--nnodes 2``, a c10d
rendezvous on 127.0.0.1), one process each, gloo on the CPU. They train the weights of one
process with the same global batch; when one machine's process dies, the other ends in bounded
time with a message, and the run resumes from its last checkpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

from test_distributed import ENV, KILLER  # the same environment and rank-1 killer script

TIMEOUT = 240

SPEC = """\
input: [6]
model:
  type: Sequential
  layers:
    fc1: {{type: Linear, out_features: 16}}
    relu: ReLU
    fc2: {{type: Linear, out_features: 3}}
train:
  data: {{type: TensorFile, path: {data}}}
  batch_size: 8
  epochs: 2
  optimizer: {{type: SGD, lr: 0.1, momentum: 0.9}}
  device: cpu
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _two_nodes(folder: Path, program: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """``program`` on two "machines": one torchrun launcher each, one rendezvous."""
    port = _free_port()
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        f"test-{port}",
    ]
    nodes = [
        subprocess.Popen(
            [*launcher, *program],
            cwd=folder,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    results = []
    try:
        for node in nodes:
            out, err = node.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(node.args, node.returncode, out, err))
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    return results


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nodes")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(60, 6, generator=g)
    torch.save({"x": x, "y": (x[:, 0] > 0).long() + (x[:, 1] > 0).long()}, folder / "data.pt")
    path = folder / "net.yaml"
    path.write_text(SPEC.format(data=folder / "data.pt"))
    return path


TRAIN = ["--checkpoint-every", "3", "--no-progress"]


def test_two_machines_reach_the_weights_of_one_process(spec: Path) -> None:
    folder = spec.parent
    one = subprocess.run(
        [sys.executable, "-m", "specnet", "train", str(spec), "--out", "one", *TRAIN],
        cwd=folder,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert one.returncode == 0, one.stderr
    nodes = _two_nodes(folder, ["-m", "specnet", "train", str(spec), "--out", "two", *TRAIN])
    for node in nodes:
        assert node.returncode == 0, node.stderr
    assert "run folder" in nodes[0].stdout + nodes[1].stdout
    a, b = (
        load_file(folder / "one" / "model.safetensors"),
        load_file(folder / "two" / "model.safetensors"),
    )
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_a_machine_that_dies_ends_the_other_and_the_run_resumes(spec: Path) -> None:
    folder = spec.parent
    killer = folder / "killer.py"
    killer.write_text(KILLER)
    # 60 samples in batches of 8: 8 steps an epoch; checkpoints at steps 3 and 6, ...
    cut = _two_nodes(folder, [str(killer), "10", "train", str(spec), "--out", "cut", *TRAIN])
    assert all(node.returncode != 0 for node in cut), [n.stderr for n in cut]
    # The surviving process says what happened, without a traceback (the launchers report
    # the failed processes their own way).
    text = "".join(n.stderr + n.stdout for n in cut)
    assert (
        "specnet train: lost the connection to another process of the run (it stopped, or its "
        "machine did): this process stops too" in text
    ), text
    assert "[rank0]: Traceback" not in text and "pair.cc" not in text, text
    saved = sorted(p.name for p in (folder / "cut" / "checkpoints").glob("step-*.json"))
    assert saved[-1] == "step-000009.json", saved
    assert not (folder / "cut" / "model.safetensors").exists()

    resumed = _two_nodes(folder, ["-m", "specnet", "train", "--resume", "cut", "--no-progress"])
    for node in resumed:
        assert node.returncode == 0, node.stderr
    whole = _two_nodes(folder, ["-m", "specnet", "train", str(spec), "--out", "whole", *TRAIN])
    assert all(node.returncode == 0 for node in whole)
    a = load_file(folder / "whole" / "model.safetensors")
    b = load_file(folder / "cut" / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
