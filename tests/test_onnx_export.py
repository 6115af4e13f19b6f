"""`specnet export --format onnx`: the batch is dynamic unless --batch fixes it (or the model
does), torch's exporter says nothing unless --verbose, and onnxruntime runs the file with the
built model's outputs at any batch size."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import specnet
from specnet._build import export
from specnet._build.export import export_onnx
from specnet._cli.main import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LENET = EXAMPLES / "lenet.yaml"


def _specnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specnet", *args], capture_output=True, text=True, cwd=cwd
    )


def _dims(path: Path) -> tuple[list[list[int | str]], list[list[int | str]]]:
    """Each input's and each output's shape in the file: a number, or a dimension's name."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def shape(value: Any) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return [shape(v) for v in graph.input], [shape(v) for v in graph.output]


def _inputs(spec: specnet.Spec, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in spec.inputs.items():
        shape = (batch, *t.shape) if t.batch else t.shape
        if t.dtype == "bool":
            out[name] = torch.rand(shape, generator=gen) > 0.2
        elif t.dtype.startswith("int"):
            out[name] = torch.randint(0, 2 if "type" in name else 50, shape, generator=gen)
        else:
            out[name] = torch.randn(shape, generator=gen)
    return out


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in _tensors(v)]


def _run(path: Path, inputs: dict[str, torch.Tensor]) -> list[Any]:
    session = onnxruntime.InferenceSession(str(path))
    return list(session.run(None, {name: x.numpy() for name, x in inputs.items()}))


def test_the_command_is_quiet_and_writes_a_dynamic_batch(tmp_path: Path) -> None:
    out = tmp_path / "lenet.onnx"
    result = _specnet("export", str(LENET), "--format", "onnx", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # specnet's own line alone: none of torch's progress ("[torch.onnx] Obtain model graph
    # ..."), no warnings.
    assert (result.stdout, result.stderr) == ("", f"wrote {out}\n")
    assert _dims(out) == ([["batch", 1, 32, 32]], [["batch", 10]])
    # Fresh weights: the file runs at any batch size (compared with torch below).
    spec = specnet.load(LENET)
    for batch in (1, 5):
        (y,) = _run(out, _inputs(spec, batch, torch.Generator().manual_seed(batch)))
        assert y.shape == (batch, 10) and np.isfinite(y).all()


def test_an_onnx_output_name_chooses_the_format(tmp_path: Path) -> None:
    out = tmp_path / "lenet.onnx"
    result = _specnet("export", str(LENET), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _dims(out) == ([["batch", 1, 32, 32]], [["batch", 10]])
    # Python source asked for by name into an .onnx file is a usage error, nothing written.
    other = tmp_path / "other.onnx"
    result = _specnet("export", str(LENET), "--format", "python", "-o", str(other), cwd=tmp_path)
    assert result.returncode == 2 and not other.exists()
    assert f"-o {other} names an ONNX file" in result.stderr


def test_verbose_shows_the_exporters_progress_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "lenet.onnx"
    result = _specnet(
        "export", str(LENET), "--format", "onnx", "-o", str(out), "--verbose", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # its progress goes with specnet's messages
    assert "[torch.onnx] Obtain model graph for `Sequential(" in result.stderr
    assert "[torch.onnx] Translate the graph into ONNX... ✅" in result.stderr
    assert result.stderr.endswith(f"wrote {out}\n")


CASES = [
    ("lenet.yaml", None),  # convolutions, pooling, a per-sample Reshape
    ("lstm_classifier.yaml", None),  # int64 input, an LSTM (torch's loop for dynamic shapes)
    ("zoo/bert.yaml", "tiny"),  # three inputs sharing the batch, two outputs
]


@pytest.mark.parametrize(("file", "variant"), CASES, ids=[c[0] for c in CASES])
def test_the_file_computes_the_built_models_outputs_at_any_batch(
    tmp_path: Path, file: str, variant: str | None
) -> None:
    spec = specnet.load(EXAMPLES / file, variant=variant)
    model = specnet.build(spec).eval()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export_onnx(spec, path, model=model) is None  # None: the batch is dynamic
    assert [str(w.message) for w in caught] == []
    ins, outs = _dims(path)
    for name, dims, t in zip(spec.inputs, ins, spec.inputs.values(), strict=True):
        assert dims == ["batch", *t.shape], name
    assert all(dims[0] == "batch" for dims in outs)
    for batch in (1, 5):
        inputs = _inputs(spec, batch, torch.Generator().manual_seed(batch))
        got = _run(path, inputs)
        with torch.no_grad():
            want = _tensors(model(*inputs.values()))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape[0] == batch
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def test_batch_fixes_the_batch_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lenet.onnx"
    assert main(["export", str(LENET), "--format", "onnx", "-o", str(out), "--batch", "3"]) == 0
    assert capsys.readouterr() == ("", f"wrote {out}\n")
    assert _dims(out) == ([[3, 1, 32, 32]], [[3, 10]])
    (y,) = _run(out, _inputs(specnet.load(LENET), 3, torch.Generator().manual_seed(0)))
    assert y.shape == (3, 10)
    with pytest.raises(SystemExit):
        main(["export", str(LENET), "--format", "onnx", "--batch", "0"])
    assert "--batch: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["export", str(LENET), "--batch", "3"]) == 2  # --format python
    assert "--batch and --verbose are options of --format onnx" in capsys.readouterr().err


class _TwoRows(torch.nn.Module):
    """Adds a tensor of 2 rows: torch fixes the batch to the example's while tracing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.ones(2, 4)


def test_a_model_that_fixes_its_batch_is_written_for_a_batch_of_1(tmp_path: Path) -> None:
    spec = specnet.load({"input": [4], "model": {"type": "Linear", "out_features": 4}})
    path = tmp_path / "fixed.onnx"
    assert export_onnx(spec, path, model=_TwoRows()) == 1
    assert _dims(path) == ([[1, 4]], [[2, 4]])
    (y,) = _run(path, {"input": torch.zeros(1, 4)})
    np.testing.assert_array_equal(y, np.ones((2, 4), np.float32))


def test_a_failed_dynamic_export_is_tried_again_with_a_fixed_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.onnx.export
    calls: list[object] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["dynamic_shapes"])
        if kwargs["dynamic_shapes"] is not None:
            raise torch.onnx.OnnxExporterError("cannot export a dynamic batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", flaky)
    path = tmp_path / "lenet.onnx"
    assert export_onnx(specnet.load(LENET), path) == 1
    assert len(calls) == 2 and calls[1] is None
    assert _dims(path) == ([[1, 1, 32, 32]], [[1, 10]])


def test_the_command_notes_a_fixed_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fixed(spec: specnet.Spec, path: str, batch: int | None, verbose: bool) -> int:
        Path(path).write_bytes(b"")
        return 1

    monkeypatch.setattr(export, "export_onnx", fixed)
    out = tmp_path / "lenet.onnx"
    assert main(["export", str(LENET), "--format", "onnx", "-o", str(out)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"specnet export: note: the model fixes its batch size: {out} is for a batch of 1 "
        "only (--batch N for another)",
        f"wrote {out}",
    ]
