"""What users install: the two distributions, the wheel alone, the sdist, the pre-commit hook.

specnet-core (the repository's root) is the whole package with pydantic and PyYAML only, so
that validation (the pre-commit hook, CI jobs, editors) installs in seconds; specnet
(packaging/specnet) adds torch. The wheel and sdist are built here with ``python -m build``
as a release would build them, and the wheel is installed alone into a new virtual
environment (its dependencies come from the package index).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.hook import BAD, OTHERS, run_hook

ROOT = Path(__file__).resolve().parents[1]
CORE = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
FULL = tomllib.loads((ROOT / "packaging" / "specnet" / "pyproject.toml").read_text("utf-8"))
VERSION = CORE["project"]["version"]
HOOK_LIMIT_MB = 100
LIGHT = ("torch", "torchvision", "numpy")  # what validation must not need


def _run(
    *cmd: str | Path, cwd: Path = ROOT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


# -- the two distributions ----------------------------------------------------------------


def test_the_package_list_is_the_package_tree() -> None:
    listed = set(CORE["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "specnet").rglob("__init__.py")
    }
    assert listed == found | {"specnet._schemas"}
    assert CORE["tool"]["setuptools"]["package-dir"] == {"specnet._schemas": "schemas"}


def test_the_full_distribution_is_core_with_torch_at_the_same_version() -> None:
    project = FULL["project"]
    assert project["name"] == "specnet" and CORE["project"]["name"] == "specnet-core"
    assert project["version"] == VERSION
    assert project["dependencies"] == [f"specnet-core[torch]=={VERSION}"]
    user_extras = {
        k
        for k in CORE["project"]["optional-dependencies"]
        if k in ("train", "export", "tensorboard", "lsp")
    }
    assert project["optional-dependencies"] == {
        extra: [f"specnet-core[{extra}]=={VERSION}"] for extra in sorted(user_extras)
    }
    assert project["license"] == CORE["project"]["license"] == "MIT"


def test_core_depends_on_what_the_package_imports_and_no_more() -> None:
    names = {re.split(r"[<>=!\[ ;]", d)[0].lower() for d in CORE["project"]["dependencies"]}
    assert names == {"pydantic", "pyyaml", "shtab"}
    text = "\n".join(p.read_text("utf-8") for p in (ROOT / "specnet").rglob("*.py"))
    for module in ("pydantic", "yaml", "shtab"):
        assert re.search(rf"^\s*(import|from) {module}\b", text, re.M), module
    assert not re.search(r"^\s*(import|from) jsonschema\b", text, re.M)  # a test tool only


def test_the_readme_rev_is_this_version() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    revs = re.findall(r"^\s*rev: (\S+)", readme, re.M)
    assert revs and set(revs) == {f"v{VERSION}"}
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text("utf-8")
    assert f"rev: v{VERSION}" in hooks


# -- the wheel, alone in a new environment -------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def light_env(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtual environment with the wheel and its dependencies, nothing else."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    wheel = next(dist.glob("specnet_core-*.whl"))
    _run(
        home / "bin" / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel
    )
    yield home


def test_the_wheel_carries_the_schema_and_the_license(dist: Path) -> None:
    import zipfile

    wheel = next(dist.glob(f"specnet_core-{VERSION}-py3-none-any.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "specnet/_schemas/specnet.schema.json" in names
    assert "specnet/_front/catalog.json" in names and "specnet/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    meta = zipfile.ZipFile(wheel).read(f"specnet_core-{VERSION}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "torch" in r and "extra ==" not in r], requires
    packed = zipfile.ZipFile(wheel).read("specnet/_schemas/specnet.schema.json")
    assert packed == (ROOT / "schemas" / "specnet.schema.json").read_bytes()


def test_the_wheel_alone_validates_the_examples(light_env: Path, tmp_path: Path) -> None:
    bin_ = light_env / "bin"
    for module in LIGHT:
        assert _run(bin_ / "python", "-c", f"import {module}", check=False).returncode != 0
    assert _run(bin_ / "specnet", "--version").stdout.strip() == f"specnet {VERSION}"
    examples = sorted(str(p) for p in (ROOT / "examples").rglob("*.yaml"))
    done = _run(bin_ / "specnet", "validate", *examples, cwd=tmp_path)
    assert f"{len(examples)} of {len(examples)} spec(s) valid" in done.stderr
    bad = tmp_path / "bad.specnet.yaml"
    bad.write_text(BAD)
    done = _run(bin_ / "specnet", "validate", bad, cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert done.stdout.startswith(f"{bad}:2:23: model.out_feature: unknown argument")
    path = Path(_run(bin_ / "specnet", "schema", "--path").stdout.strip())
    assert path.is_relative_to(light_env), path
    assert path.read_bytes() == (ROOT / "schemas" / "specnet.schema.json").read_bytes()


def test_without_torch_building_says_what_to_install(light_env: Path, tmp_path: Path) -> None:
    spec = str(ROOT / "examples" / "digits_cnn.yaml")
    bin_ = light_env / "bin"
    for cmd in (["train", spec, "--out", "run"], ["summary", spec], ["validate", "--build", spec]):
        done = _run(bin_ / "specnet", *cmd, cwd=tmp_path, check=False)
        assert done.returncode == 1, (cmd, done.stdout, done.stderr)
        out = done.stdout + done.stderr
        assert "pip install specnet" in out and "Traceback" not in out, (cmd, out)
    assert not (tmp_path / "run").exists()
    code = "import specnet; specnet.build('" + spec + "')"
    done = _run(bin_ / "python", "-c", code, check=False)
    assert "TorchMissingError: specnet.build needs torch" in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith("pip install specnet")
    trainer = _run(bin_ / "python", "-c", "import specnet; specnet.Trainer", check=False)
    assert "TorchMissingError: specnet.Trainer needs torch" in trainer.stderr, trainer.stderr


# -- the sdist -----------------------------------------------------------------------------


def test_the_sdist_holds_every_file_its_tests_use(dist: Path, tmp_path: Path) -> None:
    sdist = next(dist.glob(f"specnet_core-{VERSION}.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = {n for n in tracked if not n.startswith((".ci/", ".git"))}
    assert wanted - names == set()
    tree = tmp_path / f"specnet_core-{VERSION}"
    # A sample of the suite, run from the unpacked tree: it imports that tree's package.
    done = _run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_bad_specs.py",
        "tests/test_examples.py",
        "tests/test_schema.py::test_committed_schema_is_up_to_date",
        cwd=tree,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (
        "passed" in done.stdout
        and str(tree)
        in _run(sys.executable, "-c", "import specnet; print(specnet.__file__)", cwd=tree).stdout
    )


# -- the pre-commit hook ---------------------------------------------------------------------


def test_the_pre_commit_hook_checks_spec_files_only_in_a_small_environment(
    tmp_path: Path,
) -> None:
    run = run_hook(tmp_path)
    assert run.returncode == 1, run.output
    assert "bad.specnet.yaml:2:23: model.out_feature: unknown argument" in run.output
    assert "net.specnet.yaml" not in run.output
    for other in OTHERS:
        assert other not in run.output, run.output
    site = next(run.environment.glob("lib/python*/site-packages"))
    assert (site / "specnet" / "_schemas" / "specnet.schema.json").is_file()
    for module in LIGHT:
        assert not (site / module).exists(), f"the hook's environment holds {module}"
    assert run.megabytes < HOOK_LIMIT_MB, f"{run.megabytes:.0f} MB"
