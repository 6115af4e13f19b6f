"""Missing optional packages (the train and export extras) are found before a command does any
work, and reported as one line with the pip command that installs them.

A package is made missing without uninstalling it: ``sys.modules[name] = None`` is Python's
own way to make ``import name`` fail, and :func:`importlib.util.find_spec` then finds nothing.
The command line runs for real (``python -m specnet``) with a ``sitecustomize`` that does so
for the names in ``SPECNET_TEST_BLOCK``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from specnet._front.errors import MissingDependency, SpecnetError, UsageError
from specnet._front.extras import (
    DATA_SETS,
    PACKAGES,
    evaluate_needs,
    export_needs,
    install_line,
    predict_needs,
    require,
    train_needs,
)
from specnet._front.overrides import load_with_overrides
from specnet._front.trainspec import TrainSpec, datasets

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: tiny
input: [4]
model:
  type: Sequential
  layers:
    fc: {type: Linear, out_features: 3}
train:
  data: {type: Synthetic, samples: 16, test_samples: 8, classes: 3}
  batch_size: 8
  epochs: 1
  device: cpu
"""

BLOCKER = """\
import os
import sys

for _name in filter(None, os.environ.get("SPECNET_TEST_BLOCK", "").split(",")):
    sys.modules[_name] = None  # `import _name` fails, find_spec finds nothing: not installed
"""

Run = Callable[..., "subprocess.CompletedProcess[str]"]


def _train_spec(data: str) -> TrainSpec:
    return TrainSpec.model_validate({"data": {"type": data}})


def _requirement_names(requirements: Sequence[str]) -> set[str]:
    """``["torch>=2.14,<2.15", "specnet-core[torch]"]`` -> ``{"torch", "specnet-core"}``,
    normalised as pip compares them."""
    names = set()
    for req in requirements:
        name = req.split(";")[0]
        for stop in "[<>=!~ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower().replace("_", "-").replace(".", "-"))
    return names


# -- the table agrees with the packaging --------------------------------------------------


def test_each_package_is_listed_in_the_extra_it_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    extras = project["optional-dependencies"]
    for package in PACKAGES.values():
        assert package.extra in extras, package
        assert package.distribution in _requirement_names(extras[package.extra]), package


def test_the_install_line_names_extras_that_specnet_offers() -> None:
    # The pip line installs `specnet` (specnet-core with torch): the extras must be its too.
    path = ROOT / "packaging" / "specnet" / "pyproject.toml"
    extras = tomllib.loads(path.read_text("utf-8"))["project"]["optional-dependencies"]
    for extra in {p.extra for p in PACKAGES.values()}:
        assert any(r.startswith(f"specnet-core[{extra}]") for r in extras[extra]), extra


def test_the_data_sets_need_what_their_loaders_import() -> None:
    from specnet._train import data

    assert set(DATA_SETS) == set(data._LOADERS)  # the others are torchvision's
    for name in datasets():
        modules = [n.module for n in train_needs(_train_spec(name), progress=False)]
        if name in DATA_SETS:
            assert "torchvision" not in modules, name
            assert DATA_SETS[name] is None or DATA_SETS[name] in modules, name
        else:
            assert "torchvision" in modules, name


# -- what each command needs, and the message ---------------------------------------------


def test_training_always_needs_the_weights_and_curves_packages_and_tqdm_for_a_bar() -> None:
    quiet = {n.module for n in train_needs(_train_spec("Synthetic"), progress=False)}
    assert quiet == {"safetensors", "matplotlib"}
    shown = {n.module for n in train_needs(_train_spec("Digits"), progress=True)}
    assert shown == {"sklearn", "safetensors", "matplotlib", "tqdm"}
    assert {n.module for n in train_needs(None, progress=False)} == quiet
    assert {n.module for n in evaluate_needs(_train_spec("MNIST"))} == {
        "safetensors",
        "torchvision",
    }
    assert {n.module for n in predict_needs()} == {"safetensors"}
    assert export_needs("python") == []
    assert {n.module for n in export_needs("onnx")} == {"onnx", "onnxscript"}


def test_one_error_names_every_missing_package_and_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("sklearn", "safetensors", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency) as caught:
        require(train_needs(_train_spec("Digits"), progress=False))
    assert str(caught.value) == (
        "this needs scikit-learn (the Digits data set), safetensors (checkpoints and weights) "
        "and matplotlib (curves.png), which are not installed: pip install 'specnet[train]'"
    )
    assert caught.value.modules == ("sklearn", "safetensors", "matplotlib")
    assert caught.value.install == "pip install 'specnet[train]'"
    error = caught.value
    assert isinstance(error, SpecnetError) and isinstance(error, ImportError)
    assert not isinstance(error, UsageError) and error.exit_code == 1
    again = pickle.loads(pickle.dumps(error))  # crosses processes as the other errors do
    assert (str(again), again.modules, again.install) == (str(error), error.modules, error.install)


def test_packages_of_one_purpose_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependency, match=r"^ONNX export needs onnx and onnxscript "):
        require(export_needs("onnx"), "ONNX export")


def test_the_pip_line_installs_every_extra_needed_at_once() -> None:
    assert install_line(["sklearn", "tqdm"]) == "pip install 'specnet[train]'"
    assert install_line(["onnx", "tqdm"]) == "pip install 'specnet[export,train]'"


# -- from Python ----------------------------------------------------------------------------


def test_train_run_refuses_before_creating_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specnet._train.runs import train_run

    (tmp_path / "tiny.yaml").write_text(SPEC)
    spec = load_with_overrides(tmp_path / "tiny.yaml", [])
    monkeypatch.setitem(sys.modules, "safetensors", None)
    out = tmp_path / "run"
    with pytest.raises(MissingDependency, match=r"^training needs safetensors \(checkpoints"):
        train_run(spec, out, progress=False)
    assert not out.exists()


def test_export_onnx_refuses_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specnet._build.export import export_onnx

    (tmp_path / "tiny.yaml").write_text(SPEC)
    spec = load_with_overrides(tmp_path / "tiny.yaml", [])
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependency, match=r"pip install 'specnet\[export\]'$"):
        export_onnx(spec, tmp_path / "tiny.onnx")
    assert not (tmp_path / "tiny.onnx").exists()


# -- the command line, run for real ---------------------------------------------------------


@pytest.fixture
def specnet(tmp_path: Path) -> Run:
    """Runs ``python -m specnet ARGS`` in ``tmp_path`` with the packages ``block`` missing."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "tiny.yaml").write_text(SPEC)

    def run(
        *args: str, block: Sequence[str], module: Sequence[str] = ("-m", "specnet")
    ) -> subprocess.CompletedProcess[str]:
        path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, "SPECNET_TEST_BLOCK": ",".join(block)}
        return subprocess.run(
            [sys.executable, *module, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _refused(result: subprocess.CompletedProcess[str], line: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr == line + "\n"
    assert result.stdout == ""


def test_the_blocker_makes_a_package_missing(specnet: Run) -> None:
    code = "import importlib.util as u, sklearn"
    result = specnet("-c", code, block=["sklearn"], module=())
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr


def test_train_without_safetensors_leaves_no_run_folder(specnet: Run, tmp_path: Path) -> None:
    result = specnet("train", "tiny.yaml", "--no-progress", "--out", "run", block=["safetensors"])
    _refused(
        result,
        "specnet train: this needs safetensors (checkpoints and weights), which is not "
        "installed: pip install 'specnet[train]'",
    )
    assert not (tmp_path / "run").exists()


def test_train_on_digits_without_scikit_learn(specnet: Run, tmp_path: Path) -> None:
    result = specnet(
        "train", "tiny.yaml", "--set", "train.data=Digits", "--out", "run", block=["sklearn"]
    )
    _refused(
        result,
        "specnet train: this needs scikit-learn (the Digits data set), which is not installed: "
        "pip install 'specnet[train]'",
    )
    assert not (tmp_path / "run").exists()


def test_train_on_a_torchvision_data_set_without_torchvision(specnet: Run, tmp_path: Path) -> None:
    result = specnet(
        "train",
        "tiny.yaml",
        "--set",
        "train.data={type: MNIST, root: data}",
        "--out",
        "run",
        block=["torchvision", "matplotlib"],
    )
    _refused(
        result,
        "specnet train: this needs torchvision (the MNIST data set) and matplotlib (curves.png), "
        "which are not installed: pip install 'specnet[train]'",
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_train_needs_tqdm_only_for_the_progress_bar(specnet: Run, tmp_path: Path) -> None:
    result = specnet("train", "tiny.yaml", "--out", "run", block=["tqdm"])
    _refused(
        result,
        "specnet train: this needs tqdm (the progress bar), which is not installed: "
        "pip install 'specnet[train]'",
    )
    assert not (tmp_path / "run").exists()
    result = specnet("train", "tiny.yaml", "--no-progress", "--out", "run", block=["tqdm"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()


def test_export_onnx_without_onnx(specnet: Run, tmp_path: Path) -> None:
    result = specnet("export", "tiny.yaml", "--format", "onnx", block=["onnx"])
    _refused(
        result,
        "specnet export: this needs onnx (torch's ONNX exporter), which is not installed: "
        "pip install 'specnet[export]'",
    )
    assert not (tmp_path / "tiny.onnx").exists()


def test_evaluate_and_predict_check_before_reading_the_checkpoint(specnet: Run) -> None:
    # No checkpoint exists: the missing package is what they report, not that.
    result = specnet(
        "evaluate",
        "tiny.yaml",
        "--set",
        "train.data=Digits",
        "--checkpoint",
        "run",
        block=["sklearn", "safetensors"],
    )
    _refused(
        result,
        "specnet evaluate: this needs safetensors (reading the checkpoint) and scikit-learn "
        "(the Digits data set), which are not installed: pip install 'specnet[train]'",
    )
    result = specnet(
        "predict",
        "tiny.yaml",
        "--checkpoint",
        "run",
        "--input",
        "x.pt",
        "--output",
        "y.pt",
        block=["safetensors"],
    )
    _refused(
        result,
        "specnet predict: this needs safetensors (reading the checkpoint), which is not "
        "installed: pip install 'specnet[train]'",
    )
