"""Digits' splits are kept on disk after the first run: the next run reads them without
scikit-learn, and a cache file that is damaged, stale or unwritable never changes the data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from specnet._train import data
from specnet._train.datacache import cache_folder, cached_tensors


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of the data cache (``data/`` in specnet's cache, ``$SPECNET_CACHE``)."""
    monkeypatch.setenv("SPECNET_CACHE", str(tmp_path / "cache"))
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
    env = {**__import__("os").environ, "SPECNET_CACHE": str(cache.parent)}
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
    fresh = data._split_digits(0.2, 0.1, 3)
    for k in cached:
        assert torch.equal(cached[k], fresh[k])


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

    def prepare(value: float) -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"x": torch.full((3,), value)}

    cached_tensors("thing", {"v": 1}, lambda: prepare(1.0))
    (first,) = cache.iterdir()
    cached_tensors("thing", {"v": 2}, lambda: prepare(2.0))
    (second,) = set(cache.iterdir()) - {first}
    second.write_bytes(first.read_bytes())  # key 1's file under key 2's name
    got = cached_tensors("thing", {"v": 2}, lambda: prepare(2.0))
    assert len(calls) == 3 and torch.equal(got["x"], torch.full((3,), 2.0))


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
