"""Digits' splits are kept on disk after the first run: the next run reads them without
scikit-learn, and a cache file that is damaged, stale or unwritable never changes the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from specnet._front.trainspec import Component
from specnet._train import data, datacache, digits
from specnet._train.datacache import cache_folder, cached_arrays


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of the data cache (``data/`` in specnet's cache, ``$SPECNET_CACHE``)."""
    monkeypatch.setenv("SPECNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datacache, "_helpers", {})  # this test's helper processes
    data._digits_split.cache_clear()
    return tmp_path / "cache" / "data"


def _splits() -> dict[str, torch.Tensor]:
    s = data._digits_split(0.2, 0.1, 3)
    data._digits_split.cache_clear()
    return {"images": s.images, "labels": s.labels, **s.index}


def test_second_load_reads_the_cache_without_scikit_learn(cache: Path) -> None:
    first = _splits()
    assert [p.suffix for p in cache.iterdir()] == [".safetensors"]
    code = (
        "import sys; sys.modules['sklearn'] = None\n"  # importing scikit-learn now fails
        "from specnet._train import data\n"
        "s = data._digits_split(0.2, 0.1, 3)\n"
        "print(len(s.index['train']), len(s.index['val']), len(s.index['test']),"
        " float(s.images.sum()), int(s.labels.sum()))"
    )
    env = {**os.environ, "SPECNET_CACHE": str(cache.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    want = [len(first["train"]), len(first["val"]), len(first["test"])]
    assert [int(v) for v in out[:3]] == want
    assert float(out[3]) == float(first["images"].sum())
    assert int(out[4]) == int(first["labels"].sum())


def test_other_settings_are_other_files_and_equal_a_fresh_split(cache: Path) -> None:
    cached = _splits()
    again = _splits()  # read back
    for k in cached:
        assert torch.equal(cached[k], again[k])
    other = data._digits_split(0.2, 0.1, 4)
    assert len(list(cache.iterdir())) == 2
    assert not torch.equal(other.index["test"], cached["test"])
    fresh = digits.split_digits(0.2, 0.1, 3)
    for k in cached:
        assert torch.equal(cached[k], torch.from_numpy(fresh[k]))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_file_is_prepared_again(cache: Path, damage: str) -> None:
    good = _splits()
    (path,) = cache.iterdir()
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif (
        damage == "flip"
    ):  # one bit of the tensors: safetensors reads it, the digest does not match
        path.write_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:])
    else:
        path.write_bytes(b"not a safetensors file")
    again = _splits()
    for k in good:
        assert torch.equal(good[k], again[k])
    from safetensors.torch import load_file

    rewritten = load_file(path)  # written again, whole
    assert all(torch.equal(good[k], rewritten[k]) for k in good)


def test_a_file_made_for_another_key_is_not_used(cache: Path) -> None:
    calls: list[int] = []

    def prepare(value: float) -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.full((3,), value)}

    cached_arrays("thing", {"v": 1}, lambda: prepare(1.0))
    (first,) = cache.iterdir()
    cached_arrays("thing", {"v": 2}, lambda: prepare(2.0))
    (second,) = set(cache.iterdir()) - {first}
    second.write_bytes(first.read_bytes())  # key 1's file under key 2's name
    got = cached_arrays("thing", {"v": 2}, lambda: prepare(2.0))
    assert len(calls) == 3 and np.array_equal(got["x"], np.full((3,), 2.0))


def test_an_unwritable_cache_folder_still_gives_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("SPECNET_CACHE", str(blocker / "cache"))
    data._digits_split.cache_clear()
    s = _splits()
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == 1797


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache_folder() == Path("/somewhere/specnet/data")
    monkeypatch.setenv("SPECNET_CACHE", "/elsewhere")  # specnet's cache, as scripts/env.sh's
    assert cache_folder() == Path("/elsewhere/data")


_DIGITS = Component(type="Digits", args={"test_fraction": 0.2, "val_fraction": 0.1})


def test_a_first_run_prepares_digits_in_a_helper_process_meanwhile(cache: Path) -> None:
    # specnet train starts the helper before it imports torch; the data set waits for it and
    # reads its file, and gets the split a run prepares itself without importing scikit-learn.
    code = (
        "import sys\n"
        "from specnet._front.trainspec import Component\n"
        "from specnet._train import data, digits\n"
        "digits.prepare_in_background(Component(type='Digits', args={'test_fraction': 0.2,"
        " 'val_fraction': 0.1}), 3)\n"
        "sys.modules['sklearn'] = None\n"  # preparing it here would fail
        "s = data._digits_split(0.2, 0.1, 3)\n"
        "print(float(s.images.sum()), s.index['test'].tolist())"
    )
    env = {**os.environ, "SPECNET_CACHE": str(cache.parent)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    total, test = run.stdout.split(maxsplit=1)
    assert [p.suffix for p in cache.iterdir()] == [".safetensors"]
    fresh = digits.split_digits(0.2, 0.1, 3)
    assert float(total) == float(torch.from_numpy(fresh["images"]).sum())
    assert json.loads(test) == fresh["test"].tolist()


def test_the_helper_process_does_not_import_torch(cache: Path) -> None:
    env = {**os.environ, "SPECNET_CACHE": str(cache.parent)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "specnet._train.digits", "0.2", "0.1", "3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "sklearn" in imported and "numpy" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert len(list(cache.iterdir())) == 1


def test_a_helper_that_fails_leaves_the_preparing_to_the_run(cache: Path) -> None:
    datacache.prepare_elsewhere("thing", {"v": 1}, ["specnet._no_such_module"])
    calls: list[int] = []

    def prepare() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(4)}

    got = cached_arrays("thing", {"v": 1}, prepare)
    assert calls == [1] and np.array_equal(got["x"], np.arange(4))
    datacache.prepare_elsewhere("thing", {"v": 1}, ["specnet._no_such_module"])
    assert not datacache._helpers  # the file is whole: nothing started


def test_other_data_sets_and_cached_splits_start_no_helper(cache: Path) -> None:
    digits.prepare_in_background(Component(type="Synthetic", args={}), 0)
    digits.prepare_in_background(None, 0)
    assert not datacache._helpers
    _splits()  # (0.2, 0.1, 3) cached
    digits.prepare_in_background(_DIGITS, 3)
    assert not datacache._helpers


def test_specnet_train_starts_the_helper_for_the_split_the_run_reads(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The CLI starts it before importing torch, with the spec's fractions (after --set) and
    # seed, in one process of a run: not in the launcher of --nproc, nor in local ranks past 0.
    from specnet._cli import main as cli
    from specnet._train import runs

    started: list[Path] = []
    monkeypatch.setattr(
        digits,
        "prepare_elsewhere",
        lambda n, k, argv: started.append(datacache.cache_file(n, k)[0]),
    )

    class Stop(Exception):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        raise Stop

    monkeypatch.setattr(runs, "train_run", stop)
    monkeypatch.setattr("specnet._train.distributed.launch", stop)
    spec = tmp_path / "digits.yaml"
    spec.write_text(
        "version: 1\ninput: [1, 8, 8]\nmodel: {type: Sequential, layers: {flat: Flatten, "
        "fc: {type: Linear, out_features: 10}}}\ntrain: {data: {type: Digits, val_fraction: 0},"
        " epochs: 1, seed: 5}\n"
    )
    argv = [
        "train",
        str(spec),
        "--out",
        str(tmp_path / "run"),
        "--set",
        "train.data.test_fraction=0.25",
    ]
    with pytest.raises(Stop):
        cli.main(argv)
    key = digits._key(0.25, 0.0, 5)
    assert key is not None and started == [datacache.cache_file(digits.NAME, key)[0]]
    for ranked in (["--nproc", "2"], []):
        monkeypatch.setenv("LOCAL_RANK", "1" if not ranked else "0")
        with pytest.raises(Stop):
            cli.main([*argv, *ranked])
    assert len(started) == 1
