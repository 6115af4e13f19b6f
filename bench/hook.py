"""The pre-commit hook as a user gets it: how long its environment takes to create, and its size.

    python bench/hook.py            # pip's cache as it is
    python bench/hook.py --cold     # without pip's cache (every wheel downloaded)

A temporary repository with a valid spec, a bad one and other YAML/JSON files points its
``.pre-commit-config.yaml`` at a snapshot of this checkout (its tracked and untracked,
not ignored, files: what a commit of the working tree would hold), and the real ``pre-commit
run --all-files`` creates the hook's environment in an empty ``PRE_COMMIT_HOME``.
``tests/test_packaging.py`` runs the same and checks what it reports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GOOD = "input: [4]\nmodel: {type: Linear, out_features: 2}\n"
BAD = "input: [4]\nmodel: {type: Linear, out_feature: 2}\n"
OTHERS = {  # what every repository holds and the hook must leave alone
    "ci.yaml": "on: [push]\njobs: {}\n",
    "package.json": '{"name": "x", "version": "1.0.0"}\n',
    "notes.yml": "- not a spec\n",
}


@dataclass(frozen=True)
class HookRun:
    returncode: int
    output: str
    seconds: float
    environment: Path
    megabytes: float


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def snapshot(root: Path, into: Path) -> str:
    """A one-commit repository of ``root``'s working tree; its commit."""
    listed = _git("ls-files", "-co", "--exclude-standard", "-z", cwd=root).split("\0")
    for name in filter(None, listed):
        source = root / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    _git("init", "-q", cwd=into)
    _git("add", "-A", cwd=into)
    _git("commit", "-qm", "snapshot", cwd=into)
    return _git("rev-parse", "HEAD", cwd=into)


def size_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_symlink())
    return total / 2**20


def run_hook(work: Path, *, cold: bool = False) -> HookRun:
    """Create a user repository under ``work`` and run the hook on it in a fresh store."""
    source, user, home = work / "specnet", work / "project", work / "pre-commit-home"
    for folder in (source, user, home):
        folder.mkdir(parents=True)
    rev = snapshot(ROOT, source)
    (user / "net.specnet.yaml").write_text(GOOD)
    (user / "bad.specnet.yaml").write_text(BAD)
    for name, text in OTHERS.items():
        (user / name).write_text(text)
    (user / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {source}\n  rev: {rev}\n  hooks:\n  - id: specnet-validate\n"
    )
    _git("init", "-q", cwd=user)
    _git("add", "-A", cwd=user)
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    if cold:
        env["PIP_NO_CACHE_DIR"] = "1"
    exe = Path(sys.executable).with_name("pre-commit")
    started = time.perf_counter()
    done = subprocess.run(
        [str(exe), "run", "--all-files", "--color", "never"],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    found = sorted(home.glob("repo*/py_env-*"))
    if not found:
        raise RuntimeError(f"pre-commit made no environment:\n{done.stdout}\n{done.stderr}")
    return HookRun(done.returncode, done.stdout + done.stderr, seconds, found[0], size_mb(found[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="without pip's cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_hook(Path(tmp), cold=args.cold)
    print(run.output)
    cache = "no pip cache" if args.cold else "pip's cache as it was"
    print(
        f"hook environment: {run.megabytes:.0f} MB, created and run in {run.seconds:.1f} s "
        f"({cache}); pre-commit exit status {run.returncode}"
    )


if __name__ == "__main__":
    main()
