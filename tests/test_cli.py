"""The specnet command: output format, exit codes, errors, and --help without torch."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import specnet
from specnet._cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_reports_one_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [4]\nmodel:\n  type: Linear\n  out_feature: 2\n")
    assert main(["validate", str(good)]) == 0
    capsys.readouterr()
    assert main(["validate", "-q", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    # The misspelt key is reported once, with its suggestion (not also as "missing").
    assert out == [
        f"{bad}:4:3: model.out_feature: unknown argument 'out_feature' for Linear; did you mean 'out_features'?",
    ]


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing.yaml"), "examples/lenet.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'missing.yaml'}: no such file",
        "1 of 2 spec(s) valid",
    ]
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    capsys.readouterr()


def test_schema_check_detects_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert main(["schema", "-o", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("Conv2d", "Conv2D", 1))
    assert main(["schema", "-o", str(out), "--check"]) == 1


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from specnet._cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('checked')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout and result.stdout.endswith("checked\n")


def test_validate_does_not_import_torch(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    code = (
        "import sys\nfrom specnet._cli.main import main\n"
        f"assert main(['validate', '-q', {str(spec)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "specnet", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "validate" in result.stdout


EXAMPLES = ROOT / "examples"


def test_summary_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(EXAMPLES / "resnet18.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Parameters: 11,689,512 (11,689,512 trainable)" in out
    assert "layer4" in out and "[1000]" in out


def test_summary_reports_shape_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [3, 4, 4]\nmodel: {type: Conv2d, out_channels: 2, kernel_size: 9}\n")
    assert main(["summary", str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().out


def test_export_python_command(tmp_path: Path) -> None:
    out = tmp_path / "lenet.py"
    assert main(["export", str(EXAMPLES / "lenet.yaml"), "-o", str(out)]) == 0
    # The exported file runs without specnet.
    code = (
        "import sys, runpy; sys.modules['specnet'] = None\n"
        f"ns = runpy.run_path({str(out)!r})\n"
        "import torch\nm = ns['Model']()\n"
        "assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_onnx_matches_torch(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime
    import torch

    out = tmp_path / "lenet.onnx"
    assert main(["export", str(EXAMPLES / "lenet.yaml"), "--format", "onnx", "-o", str(out)]) == 0
    model = specnet.build(EXAMPLES / "lenet.yaml")
    # The command builds fresh weights: check it runs; equality with torch is checked
    # below through the library function, with this model's weights.
    session = onnxruntime.InferenceSession(str(out))
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    assert y.shape == (1, 10) and np.isfinite(y).all()
    from specnet._build.export import export_onnx

    torch.manual_seed(0)
    path2 = tmp_path / "lenet2.onnx"
    export_onnx(specnet.load(EXAMPLES / "lenet.yaml"), path2, model=model)
    session = onnxruntime.InferenceSession(str(path2))
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_validate_finds_shape_errors_without_torch(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [3, 4, 4]\nmodel: {type: Conv2d, out_channels: 2, kernel_size: 9}\n")
    code = (
        "import sys\nfrom specnet._cli.main import main\n"
        f"assert main(['validate', '-q', {str(spec)!r}]) == 1\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{spec}:2:53: model.kernel_size: Conv2d: kernel_size 9 is larger" in result.stdout


def test_errors_exit_with_their_class_exit_code_and_bugs_keep_their_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import specnet._api
    from specnet._front.errors import SpecnetError, UsageError
    from specnet._front.overrides import OverrideError
    from specnet._train.errors import CheckpointError, NonFiniteLossError, TrainingError

    # Every error a user can cause shares the base the command catches, and says its code.
    for cls, code in [
        (specnet.SpecError, 1),
        (UsageError, 2),
        (OverrideError, 2),
        (CheckpointError, 1),
        (TrainingError, 1),
        (NonFiniteLossError, 1),
    ]:
        assert issubclass(cls, SpecnetError) and cls.exit_code == code

    class Odd(SpecnetError):
        exit_code = 7

    def fails(error: Exception) -> None:
        def summary(source: object, **_: object) -> None:
            raise error

        monkeypatch.setattr(specnet._api, "summary", summary)

    fails(Odd("something the user did"))
    assert main(["summary", "examples/lenet.yaml"]) == 7
    assert capsys.readouterr().err == "specnet summary: something the user did\n"
    for bug in (ValueError("a bug"), RuntimeError("a bug")):  # not caught: a traceback
        fails(bug)
        with pytest.raises(type(bug), match="a bug"):
            main(["summary", "examples/lenet.yaml"])


def test_train_errors_that_are_bugs_are_not_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import specnet._train.runs

    def train_run(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug in the library")

    monkeypatch.setattr(specnet._train.runs, "train_run", train_run)
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\ntrain: {data: Digits}\n")
    with pytest.raises(ValueError, match="a bug in the library"):
        main(["train", str(spec), "--out", str(tmp_path / "run")])


def test_nproc_relaunches_the_command_line_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import specnet._train.distributed

    launched: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(
        specnet._train.distributed, "launch", lambda n, args: launched.append((n, list(args)))
    )
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\ntrain: {data: Digits}\n")
    head = ["train", str(spec)]
    rest = ["--set", "train.optimizer={type: SGD, lr: 0.1}", "--no-progress", "--log-every", "3"]
    for nproc in (["--nproc", "2"], ["--npr=2"]):  # an abbreviation, as argparse takes it
        launched.clear()
        assert main([*head, *nproc, *rest]) == 0
        header = shlex.join(["specnet", *head, *nproc, *rest])  # for the run's spec.yaml
        assert launched == [(2, [*head, *rest, "--launched-as", header])]


def test_export_errors_go_to_stderr_not_into_the_generated_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [4]\nmodel: {type: Linear, out_features: '5'}\n")
    assert main(["export", str(bad), "--format", "python"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{bad}:2:37: model.out_features: expected int >= 1, got '5'" in err
