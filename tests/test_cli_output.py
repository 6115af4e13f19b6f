"""The command's other faces: --version, validate's formats for CI and tools, completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import specnet
from specnet._cli.main import main

ROOT = Path(__file__).resolve().parent.parent
BAD = "input: [4]\nmodel:\n  type: Linear\n  out_feature: 2\n"
WARNED = """\
input: [4]
model:
  type: Graph
  nodes:
    a: {type: Linear, out_features: 2}
    unused: {type: ReLU, input: a}
  output: a
"""


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert specnet.__version__ == declared
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"specnet {declared}\n"


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    good, bad, warned = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "warned.yaml"
    good.write_text("input: [4]\nmodel: {type: Linear, out_features: 2}\n")
    bad.write_text(BAD)
    warned.write_text(WARNED)
    return good, bad, warned


def test_validate_github_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, warned = _files(tmp_path)
    assert main(["validate", "--format", "github", str(good), str(bad), str(warned)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"::error file={bad},line=4,col=3,title=specnet validate::model.out_feature: unknown "
        "argument 'out_feature' for Linear; did you mean 'out_features'?"
    )
    assert len(out) == 2 and out[1].startswith(f"::warning file={warned},line=6,")
    assert "model.nodes.unused" in out[1]


def test_github_annotations_escape_what_would_end_a_field(tmp_path: Path) -> None:
    odd = tmp_path / "a,b:c%.yaml"
    odd.write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "specnet", "validate", "--format", "github", str(odd)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"file={tmp_path!s}/a%2Cb%3Ac%25.yaml,line=4," in done.stdout


def test_validate_json_for_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, warned = _files(tmp_path)
    missing = tmp_path / "missing.yaml"
    code = main(["validate", "--format", "json", str(good), str(bad), str(warned), str(missing)])
    assert code == 2  # a missing file is a usage error, as in the text format
    report = json.loads(capsys.readouterr().out)
    files = {Path(r["file"]).name: r for r in report["files"]}
    assert files["good.yaml"] == {"file": str(good), "valid": True, "errors": [], "warnings": []}
    assert files["bad.yaml"]["valid"] is False
    assert files["bad.yaml"]["errors"] == [
        {
            "line": 4,
            "column": 3,
            "path": "model.out_feature",
            "message": "unknown argument 'out_feature' for Linear; did you mean 'out_features'?",
            "kind": files["bad.yaml"]["errors"][0]["kind"],
        }
    ]
    assert files["warned.yaml"]["valid"] is True
    assert [w["path"] for w in files["warned.yaml"]["warnings"]] == ["model.nodes.unused"]
    assert files["missing.yaml"]["errors"][0]["message"] == "no such file"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_name_the_commands(shell: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "specnet", "completion", shell],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in ("validate", "train", "--variant", "--format", "github"):
        assert word in done.stdout, word
    if shutil.which(shell) and shell == "bash":
        syntax = subprocess.run(["bash", "-n"], input=done.stdout, text=True, check=False)
        assert syntax.returncode == 0


def test_completion_completes_in_bash(tmp_path: Path) -> None:
    script = subprocess.run(
        [sys.executable, "-m", "specnet", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "c.sh").write_text(script)
    probe = (
        f"source {tmp_path / 'c.sh'}\n"
        "COMP_WORDS=(specnet val); COMP_CWORD=1; COMP_LINE='specnet val'; COMP_POINT=11\n"
        "_shtab_specnet specnet val specnet\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert "validate" in done.stdout.split(), done.stdout + done.stderr


def test_help_imports_neither_torch_nor_the_completion_library() -> None:
    code = (
        "import sys\n"
        "from specnet._cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'shtab', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_import_dtype_is_worded_as_in_specs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["import", "torchvision.models:resnet18", "--input", "3,8,8", "--dtype", "long"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--dtype: unknown dtype 'long' (the dtypes are float32," in err
    assert err.rstrip().endswith("did you mean 'int64'?")
