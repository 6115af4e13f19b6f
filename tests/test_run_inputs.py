"""Bad inputs to the commands around a run (train, predict, export, load_run, init_from) get
a plain or located error before any work, never a traceback from torch or the exporter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import specnet
from specnet._cli.main import main
from specnet._front.errors import UsageError
from specnet._train.errors import TrainingError
from specnet._train.inference import predict_file
from specnet._train.runs import train_run
from specnet._train.trainer import resolve_device

SPEC = """\
input: [4]
model:
  type: Sequential
  layers:
    fc: {type: Linear, out_features: 3}
train:
  data: {type: Synthetic, samples: 32, test_samples: 8, classes: 3}
  batch_size: 8
  epochs: 1
  threads: 1
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of SPEC, and the spec beside it."""
    root = tmp_path_factory.mktemp("run")
    (root / "s.yaml").write_text(SPEC, "utf-8")
    assert main(["train", str(root / "s.yaml"), "--out", str(root / "run"), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("device: 'cuda:01'", "train.device"),  # torch: Invalid device string
        ("device: 'cuda:2147483648'", "train.device"),  # torch: Could not parse device index
        ("threads: 100000000000", "train.threads"),  # torch: Overflow when unpacking long
    ],
)
def test_settings_torch_would_refuse_at_the_run_are_refused_by_validate(
    setting: str, expected: str
) -> None:
    (error,) = specnet.validate(SPEC.replace("  threads: 1\n", f"  {setting}\n"))
    assert expected in error


def test_a_device_torch_cannot_read_is_a_plain_error() -> None:
    with pytest.raises(TrainingError, match="device 'banana': torch reads no device from it"):
        resolve_device("banana")


def test_predict_refuses_an_output_it_cannot_write_before_any_work(
    run: Path, tmp_path: Path
) -> None:
    spec = specnet.load(run / "s.yaml")
    x = tmp_path / "x.pt"
    torch.save(torch.randn(2, 4), x)
    for output, said in ((tmp_path, "is a folder"), (tmp_path / "no" / "o.pt", "does not exist")):
        with pytest.raises(UsageError, match=said):
            predict_file(spec, run / "run", x, output)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"epoch,loss\n1,0.5\n", "not a file of tensors written by torch.save"),  # torch: KeyError
        (b"", "not a file of tensors written by torch.save"),  # torch: an empty message
        (None, "a torch.sparse_coo tensor; save a dense one"),  # torch: add(sparse, dense)
    ],
    ids=["text", "empty", "sparse"],
)
def test_predict_says_what_is_wrong_with_its_input(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, said: str
) -> None:
    x = tmp_path / "x.pt"
    if content is None:
        torch.save(torch.randn(2, 4).to_sparse(), x)
    else:
        x.write_bytes(content)
    out = tmp_path / "o.pt"
    args = ["predict", str(run / "s.yaml"), "--checkpoint", str(run / "run")]
    assert main([*args, "--input", str(x), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and "weights_only" not in err
    assert not out.exists()


def test_load_run_says_what_is_wrong_with_its_arguments_and_the_record(run: Path) -> None:
    folder = run / "run"
    with pytest.raises(UsageError, match="weights='bogus': one of 'final', 'best', 'last'"):
        specnet.load_run(folder, weights="bogus")  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="device 'banana'"):
        specnet.load_run(folder, device="banana")
    with pytest.raises(UsageError, match="holds no weights"):
        specnet.load_run(folder, device="meta")
    module, _ = specnet.load_run(folder, device="cpu")
    assert next(module.parameters()).device.type == "cpu"


def test_a_recorded_normalisation_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    from specnet._train.preprocess import Preprocess

    with pytest.raises(ValueError, match="finite"):
        Preprocess.from_json({"type": "Normalize", "mean": [0.0], "std": [float("nan")]})


def test_init_from_names_a_folder_or_keys_that_are_not_names(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({0: torch.zeros(3, 4), 1: torch.zeros(3)}, weights)
    for init_from, said in ((tmp_path, "is a folder"), (weights, "names (strings) to tensors")):
        spec = specnet.load(SPEC + f"  init_from: {init_from}\n")
        with pytest.raises(specnet.SpecValidationError, match=re.escape(said)) as info:
            train_run(spec, tmp_path / "run", progress=False)
        assert info.value.errors[0].path == ("train", "init_from")


def test_a_run_folders_spec_trains_again_with_its_init_from(run: Path, tmp_path: Path) -> None:
    # The spec's init_from is relative to the spec's folder; the run folder's spec.yaml holds
    # it absolute, so that spec.yaml trains again from anywhere.
    (tmp_path / "s.yaml").write_text(SPEC + "  init_from: w.safetensors\n", "utf-8")
    (tmp_path / "w.safetensors").write_bytes((run / "run" / "model.safetensors").read_bytes())
    out = tmp_path / "first"
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(out), "--no-progress"]) == 0
    recorded = specnet.load(out / "spec.yaml").train
    assert recorded is not None and recorded.init_from == str(tmp_path / "w.safetensors")
    again = tmp_path / "again"
    assert main(["train", str(out / "spec.yaml"), "--out", str(again), "--no-progress"]) == 0
    assert json.loads((again / "run.json").read_text())["epochs"] == 1


def test_export_refuses_an_output_it_cannot_write_and_a_batch_past_the_limit(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxscript")
    spec = str(run / "s.yaml")
    for args, said in (
        (["-o", str(tmp_path)], "is a folder"),
        (["-o", str(tmp_path / "no" / "m.onnx")], "does not exist"),
        (["--batch", "100000000000", "-o", str(tmp_path / "m.onnx")], "more than"),
    ):
        assert main(["export", spec, "--format", "onnx", *args]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err


def test_a_model_the_exporter_cannot_convert_is_one_line_naming_the_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxscript")
    spec = tmp_path / "f.yaml"
    spec.write_text(
        "input: [1, 8, 8]\nmodel: {type: FractionalMaxPool2d, kernel_size: 2, output_size: 4}\n"
    )
    assert main(["export", str(spec), "--format", "onnx", "-o", str(tmp_path / "f.onnx")]) == 1
    err = capsys.readouterr().err
    assert "cannot convert this model" in err and "fractional_max_pool2d" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["model.json", "run.json", "metrics.csv"])
def test_a_checkpoint_that_names_another_file_of_the_run_says_so(
    run: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # It was reported as damaged weights.
    args = ["evaluate", str(run / "s.yaml"), "--checkpoint", str(run / "run" / name)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "is not a weights file" in err and "damaged" not in err


def test_a_data_set_made_in_python_takes_paths_and_numpy_numbers(tmp_path: Path) -> None:
    import numpy as np

    from specnet._front.spec import TensorSpec
    from specnet._front.trainspec import Component
    from specnet._train.data import load_dataset

    c = Component(type="Synthetic", args={"samples": np.int64(6), "test_samples": np.int64(2)})
    train = load_dataset(c, "train", input=TensorSpec(shape=(4,)))
    assert train is not None and len(train) == 6  # type: ignore[arg-type]
    missing = Component(type="MNIST", args={"root": tmp_path / "none"})
    with pytest.raises(specnet.SpecValidationError, match="cannot load the train split"):
        load_dataset(missing, "train", input=TensorSpec(shape=(1, 28, 28)))


def test_an_onnx_export_to_stdout_or_an_unwritable_default_is_refused(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(run / "s.yaml"), "--format", "onnx", "-o", "-"]) == 2
    assert "an ONNX model is a file" in capsys.readouterr().err
    (tmp_path / "s.onnx").mkdir()  # the default output, s.onnx beside the spec, is a folder
    (tmp_path / "s.yaml").write_text(SPEC, "utf-8")
    assert main(["export", str(tmp_path / "s.yaml"), "--format", "onnx"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_predict_on_no_samples_writes_an_empty_batch_of_outputs(run: Path, tmp_path: Path) -> None:
    x, out = tmp_path / "x.pt", tmp_path / "o.pt"
    torch.save(torch.randn(0, 4), x)
    args = ["predict", str(run / "s.yaml"), "--checkpoint", str(run / "run")]
    assert main([*args, "--input", str(x), "--output", str(out)]) == 0
    assert torch.load(out, weights_only=True).shape == (0, 3)  # as for 2 samples: (2, 3)


@pytest.mark.parametrize(
    ("x", "said"),
    [
        (torch.randn(32, 4).to_sparse(), "'x' is a torch.sparse_coo tensor; save a dense one"),
        (torch.tensor(1.0), "'x' is a single number, not one row per sample"),
    ],
)
def test_a_tensor_file_of_sparse_or_single_numbers_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], x: torch.Tensor, said: str
) -> None:
    data = tmp_path / "d.pt"
    torch.save({"x": x, "y": torch.arange(32) % 3}, data)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        SPEC.replace(
            "{type: Synthetic, samples: 32, test_samples: 8, classes: 3}",
            f"{{type: TensorFile, path: {data}}}",
        ),
        "utf-8",
    )
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert f"{spec}:7:" in err and said in err and "Traceback" not in err
