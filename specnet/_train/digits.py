"""Digits' splits as NumPy arrays: scikit-learn's bundled 8x8 digits, split by the spec's
``test_fraction``, ``val_fraction`` and seed (stratified), kept in the data cache
(:mod:`~specnet._train.datacache`).

No torch here: ``specnet train`` starts ``python -m specnet._train.digits TEST VAL SEED``
(:func:`prepare_in_background`) before it imports torch when a spec's split is not cached yet,
so that scikit-learn's import and the split run on another core meanwhile; the data set
(:mod:`~specnet._train.data`) reads the file it writes.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from specnet._front.trainspec import Component, dataset_args

from .datacache import Arrays, cached_arrays, prepare_elsewhere

__all__ = ["digits_arrays", "prepare_in_background", "split_digits", "split_settings"]

NAME = "digits"


def _key(test_fraction: float, val_fraction: float, seed: int) -> dict[str, Any] | None:
    """The cache key of a split: the split is scikit-learn's (and NumPy's random numbers), so
    their versions are part of it; ``None`` without scikit-learn's metadata (not cached)."""
    try:
        library = importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed otherwise
        return None
    key: dict[str, Any] = {"scikit-learn": library, "numpy": np.__version__}
    key.update(test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    return key


def split_settings(args: Mapping[str, Any]) -> tuple[float, float]:
    """A Digits component's ``test_fraction`` and ``val_fraction`` (from its arguments with
    their defaults) as floats, as the cache keys them: ``0`` and ``0.0`` are one split."""
    return float(args["test_fraction"]), float(args["val_fraction"])


def split_digits(test_fraction: float, val_fraction: float, seed: int) -> Arrays:
    """Every image (``images``: [N, 1, 8, 8] float32 pixel values 0 to 16), the ``labels``
    (int64), and each split's sample numbers (``train``, ``val``, ``test``: int64; ``val``
    empty when ``val_fraction`` is 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    n = len(digits.target)
    rest, test = train_test_split(
        range(n), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    n_val = round(val_fraction * n)
    val: list[int] = []
    if n_val:
        rest, val = train_test_split(
            rest, test_size=n_val, random_state=seed, stratify=digits.target[rest]
        )
    return {
        "images": digits.images.astype(np.float32)[:, None],
        "labels": digits.target.astype(np.int64),
        **{
            k: np.asarray(v, dtype=np.int64)
            for k, v in (("train", rest), ("val", val), ("test", test))
        },
    }


def digits_arrays(test_fraction: float, val_fraction: float, seed: int) -> Arrays:
    """:func:`split_digits`, read from the data cache when it is there."""
    key = _key(test_fraction, val_fraction, seed)
    if key is None:  # pragma: no cover - scikit-learn installed without its metadata
        return split_digits(test_fraction, val_fraction, seed)
    return cached_arrays(NAME, key, lambda: split_digits(test_fraction, val_fraction, seed))


def prepare_in_background(data: Component | None, seed: int) -> None:
    """For a spec whose ``train.data`` is Digits, with a split not in the cache yet: start the
    helper process that prepares it (the run waits for it where it reads the data). Other data
    sets, and settings of the wrong type (the run reports them), start nothing."""
    if data is None or data.type != "Digits":
        return
    try:
        test, val = split_settings(dataset_args(data))
    except (KeyError, TypeError, ValueError):
        return
    key = _key(test, val, seed)
    if key is not None:
        prepare_elsewhere(NAME, key, [__name__, repr(test), repr(val), str(seed)])


def _main(argv: list[str]) -> int:
    test, val, seed = float(argv[0]), float(argv[1]), int(argv[2])
    digits_arrays(test, val, seed)  # writes the cache file
    return 0


if __name__ == "__main__":
    code = _main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # the file is written (atomically); the interpreter's teardown adds nothing
