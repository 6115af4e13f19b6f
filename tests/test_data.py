"""Data sets by name: torchvision's real loaders on small files in their real formats (offline),
the bundled Digits, Synthetic and TensorFile, and the check that samples fit the spec's input."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import specnet
from specnet._front.limits import MAX_SYNTHETIC_ELEMENTS
from specnet._front.spec import TensorSpec
from specnet._front.trainspec import Component
from specnet._train.data import check_fits, embedding_size, load_dataset, model_output_shape

GRAY = TensorSpec(shape=(1, 28, 28))
RGB = TensorSpec(shape=(3, 32, 32))


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX ("ubyte") file, MNIST's format: magic, big-endian sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist_like(root: Path, folder: str, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    raw = root / folder / "raw"
    for prefix, count in (("train", n), ("t10k", n // 2)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", images[:count])
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels[:count])
    return images, labels


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "KMNIST"])
def test_mnist_family_loads_idx_files_offline(tmp_path: Path, name: str) -> None:
    images, labels = _mnist_like(tmp_path, name)
    tfs = ["ToTensor", {"type": "Normalize", "mean": [0.5], "std": [0.5]}]
    c = Component(type=name, args={"root": str(tmp_path), "download": False, "transforms": tfs})
    train = load_dataset(c, "train", input=GRAY)
    test = load_dataset(c, "test", input=GRAY)
    assert train is not None and test is not None
    assert (len(train), len(test)) == (6, 3)  # type: ignore[arg-type]
    x, y = train[4]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    expected = (torch.from_numpy(images[4]).float() / 255 - 0.5) / 0.5
    assert torch.allclose(x[0], expected, atol=1e-6)
    assert y == labels[4]
    check_fits(train, name, {"input": GRAY})


def _cifar_batch(n: int, rng: np.random.Generator, key: str) -> dict[str, Any]:
    return {
        "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
        key: [int(v) for v in rng.integers(0, 10, n)],
    }


@pytest.fixture
def no_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny files cannot match the published checksums; everything else is torchvision's."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    def exists(fpath: str, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


def _pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.mark.usefixtures("no_md5")
def test_cifar10_loads_python_pickle_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    batches = {f"data_batch_{i}": _cifar_batch(2, rng, "labels") for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(3, rng, "labels")
    for name, batch in batches.items():
        _pickle(folder / name, batch)
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})

    c = Component(type="CIFAR10", args={"root": str(tmp_path)})  # default transforms: ToTensor
    train = load_dataset(c, "train", input=RGB)
    test = load_dataset(c, "test", input=RGB)
    assert train is not None and test is not None
    assert (len(train), len(test)) == (10, 3)  # type: ignore[arg-type]
    x, y = train[2]  # the first sample of data_batch_2
    raw = batches["data_batch_2"]["data"][0].reshape(3, 32, 32)  # rows: R plane, G, B
    assert x.shape == (3, 32, 32)
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(raw))
    assert y == batches["data_batch_2"]["labels"][0]


@pytest.mark.usefixtures("no_md5")
def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    train_batch = _cifar_batch(4, rng, "fine_labels")
    _pickle(folder / "train", train_batch)
    _pickle(folder / "test", _cifar_batch(2, rng, "fine_labels"))
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    c = Component(type="CIFAR100", args={"root": str(tmp_path)})
    train = load_dataset(c, "train", input=RGB)
    assert train is not None
    assert [train[i][1] for i in range(4)] == train_batch["fine_labels"]


@pytest.mark.usefixtures("no_md5")
def test_svhn_loads_mat_files_and_maps_label_10_to_0(tmp_path: Path) -> None:
    from scipy.io import savemat  # type: ignore[import-untyped]

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)  # SVHN's layout: H, W, C, N
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3]])})
    c = Component(type="SVHN", args={"root": str(tmp_path)})
    train = load_dataset(c, "train", input=RGB)
    assert train is not None
    img, label = train[0]
    assert label == 0
    assert torch.equal(
        (img * 255).round().to(torch.uint8), torch.from_numpy(x[..., 0]).permute(2, 0, 1)
    )


def test_missing_files_without_download_is_a_located_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "input: [1, 28, 28]\nmodel: {type: Flatten}\ntrain:\n"
        f"  data: {{type: MNIST, root: {tmp_path / 'nothing'}}}\n"
    )
    spec = specnet.load(spec_file)
    with pytest.raises(specnet.SpecValidationError) as info:
        load_dataset(spec.train.data, "train", input=GRAY, source=spec.source)
    text = str(info.value)
    assert text.startswith(f"{spec_file}:4:")
    assert "train.data: MNIST: cannot load the train split" in text
    assert "download: true" in text


def test_digits_is_split_by_seed_and_normalised() -> None:
    spec = TensorSpec(shape=(1, 8, 8))
    c = Component(type="Digits", args={"test_fraction": 0.25, "val_fraction": 0.1})
    train = load_dataset(c, "train", input=spec, seed=1)
    test = load_dataset(c, "test", input=spec, seed=1)
    assert isinstance(train, torch.utils.data.TensorDataset)
    assert isinstance(test, torch.utils.data.TensorDataset)
    x, y = train.tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    val = load_dataset(c, "val", input=spec, seed=1)
    assert isinstance(val, torch.utils.data.TensorDataset)
    assert len(train) + len(val) + len(test) == 1797 and len(test) == 450 and len(val) == 180
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-3
    assert torch.bincount(test.tensors[1]).min() >= 40  # stratified: every digit held out
    again = load_dataset(c, "train", input=spec, seed=1)
    other = load_dataset(c, "train", input=spec, seed=2)
    assert isinstance(again, torch.utils.data.TensorDataset)
    assert isinstance(other, torch.utils.data.TensorDataset)
    assert torch.equal(again.tensors[0], x)
    assert not torch.equal(other.tensors[0], x)


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"test_fraction": 1.5}, "test_fraction", "expected float in (0, 1), got 1.5"),
        ({"test_fraction": 0.5, "val_fraction": 0.5}, "val_fraction", "must be below 0.95"),
        ({"val_fraction": 0.001}, "val_fraction", "fewer than one per class"),
        ({"test_fraction": 0.004}, "test_fraction", "fewer than one per class"),
        ({"tset_fraction": 0.3}, "tset_fraction", "did you mean 'test_fraction'"),
    ],
)
def test_digits_arguments_are_refused_alike_by_validation_and_by_loading(
    data: dict[str, Any], key: str, message: str
) -> None:
    # specnet validate, specnet train and a TrainSpec made in Python read one description.
    text = f"input: [1, 8, 8]\nmodel: Flatten\ntrain: {{data: {json.dumps({'type': 'Digits', **data})}}}\n"
    with pytest.raises(specnet.SpecValidationError) as validated:
        specnet.load(text)
    with pytest.raises(specnet.SpecValidationError) as loaded:
        train = specnet.TrainSpec(data={"type": "Digits", **data})
        assert train.data is not None
        load_dataset(train.data, "train", input=TensorSpec(shape=(1, 8, 8)))
    for found in (validated.value, loaded.value):
        (item,) = found.errors
        assert item.path == ("train", "data", key) and message in item.msg
    assert validated.value.errors[0].msg == loaded.value.errors[0].msg


def test_a_component_takes_its_arguments_as_a_spec_writes_them_and_no_other_key() -> None:
    flat = Component.model_validate({"type": "Digits", "test_fraction": 0.3})
    assert flat == Component(type="Digits", args={"test_fraction": 0.3})
    assert Component.model_validate("Digits") == Component(type="Digits")
    mixed = Component.model_validate({"type": "Digits", "args": {}, "seed": 1})
    assert mixed.args == {"args": {}, "seed": 1}  # nothing dropped: loading names them
    with pytest.raises(specnet.SpecValidationError, match="unknown argument 'args' for Digits"):
        load_dataset(mixed, "train", input=TensorSpec(shape=(1, 8, 8)))


def test_synthetic_follows_the_spec_and_the_model() -> None:
    spec = specnet.load(
        "input: {shape: [5], dtype: int64}\nmodel:\n  type: Sequential\n  layers:\n"
        "    - {type: Embedding, num_embeddings: 7, embedding_dim: 3}\n"
        "    - Flatten\n    - {type: Linear, out_features: 2}\n"
    )
    model = specnet.build(spec)
    assert model_output_shape(model, spec.input) == (2,)
    assert embedding_size(model) == 7
    c = Component(type="Synthetic", args={"samples": 20, "test_samples": 4, "classes": 3})
    train = load_dataset(c, "train", input=spec.input, int_high=embedding_size(model))
    assert isinstance(train, torch.utils.data.TensorDataset)
    x, y = train.tensors
    assert x.shape == (20, 5) and x.dtype == torch.int64 and int(x.max()) < 7
    assert y.shape == (20,) and int(y.max()) < 3
    model(x)  # the ids fit the embedding

    regression = Component(type="Synthetic", args={"samples": 8, "classes": None})
    data = load_dataset(regression, "test", input=TensorSpec(shape=(3, 4)), output_shape=(2, 6))
    assert isinstance(data, torch.utils.data.TensorDataset)
    assert data.tensors[0].shape == (256, 3, 4)  # the default test_samples
    assert data.tensors[1].shape == (256, 2, 6) and data.tensors[1].is_floating_point()


@pytest.mark.parametrize("key", ["samples", "val_samples", "test_samples"])
def test_a_synthetic_split_past_the_limit_is_refused_at_its_size_alike_everywhere(
    key: str,
) -> None:
    # 2**26 samples of [1023] and a class target: 2**36 elements, the most a split may
    # generate; one more sample is past it. specnet validate sees it with the spec's input; a
    # TrainSpec made in Python, when the data set is loaded for that input (before anything is
    # allocated).
    limit = MAX_SYNTHETIC_ELEMENTS // 1024
    split = {"samples": "train", "val_samples": "val", "test_samples": "test"}[key]
    found = []
    for n, past in ((limit, False), (limit + 1, True)):
        data = {"type": "Synthetic", key: n, "samples": n if key == "samples" else 4}
        text = f"input: [1023]\nmodel: Flatten\ntrain: {{data: {json.dumps(data)}}}\n"
        assert bool(specnet.validate(text)) is past
        if past:
            with pytest.raises(specnet.SpecValidationError) as validated:
                specnet.load(text)
            (item,) = validated.value.errors
            assert item.path == ("train", "data", key)
            assert "MAX_SYNTHETIC_ELEMENTS" in item.msg and item.line == 3
            c = Component(type="Synthetic", args={k: v for k, v in data.items() if k != "type"})
            with pytest.raises(specnet.SpecValidationError) as loaded:
                load_dataset(c, split, input=TensorSpec(shape=(1023,)))
            found = [item.msg, loaded.value.errors[0].msg]
            assert loaded.value.errors[0].path == ("train", "data", key)
    assert found[0] == found[1]


def test_a_regression_target_counts_toward_the_limit_when_the_data_set_is_loaded() -> None:
    # validate does not infer the model's output; loading, which knows it, counts it.
    c = Component(type="Synthetic", args={"samples": 2**17, "classes": None})
    with pytest.raises(specnet.SpecValidationError) as loaded:
        load_dataset(c, "train", input=TensorSpec(shape=(1,)), output_shape=(2**19,))
    (item,) = loaded.value.errors
    assert item.path == ("train", "data", "samples")
    assert f"{2**17} samples of {2**19 + 1} elements (input and target)" in item.msg


_LITTLE_MEMORY = """
import resource, sys
import torch
from specnet._cli.main import main
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))
sys.exit(main(["validate", sys.argv[1]]) or main(["train", sys.argv[1], "--out", sys.argv[2]]))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads its memory from /proc")
def test_a_synthetic_split_larger_than_the_memory_is_a_located_error(tmp_path: Path) -> None:
    # Within the limit (validate passes) but more than the process may allocate (1 GiB more
    # than it holds once torch is imported): a located error, not torch's allocator message.
    spec = tmp_path / "big.yaml"
    spec.write_text(
        "input: [64]\nmodel: {type: Linear, out_features: 3}\n"
        "train: {data: {type: Synthetic, samples: 20000000, test_samples: 0, classes: 3}}\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", _LITTLE_MEMORY, str(spec), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    assert "1 of 1 spec(s) valid" in run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1] == (
        f"{spec}:3:42: train.data.samples: Synthetic: not enough memory for 20000000 samples "
        "of [64] float32 and their targets"
    ), run.stderr
    assert "Traceback" not in run.stderr and "DefaultCPUAllocator" not in run.stderr


def test_tensor_file(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save({"x": torch.randn(6, 4), "y": torch.arange(6)}, path)
    c = Component(type="TensorFile", args={"path": str(path)})
    train = load_dataset(c, "train", input=TensorSpec(shape=(4,)))
    assert train is not None and len(train) == 6  # type: ignore[arg-type]
    assert load_dataset(c, "test", input=TensorSpec(shape=(4,))) is None  # no x_test/y_test

    torch.save({"x": torch.randn(6, 4)}, path)
    with pytest.raises(specnet.SpecValidationError, match=r"has no tensor 'y'"):
        load_dataset(c, "train", input=TensorSpec(shape=(4,)))
    torch.save({"x": torch.randn(6, 4), "y": torch.arange(5)}, path)
    with pytest.raises(specnet.SpecValidationError, match="6 samples but 'y' has 5"):
        load_dataset(c, "train", input=TensorSpec(shape=(4,)))
    # Objects other than tensors and plain containers are refused (weights_only=True).
    torch.save({"x": nn.Linear(1, 1), "y": torch.arange(1)}, path)
    with pytest.raises(specnet.SpecValidationError, match="cannot read"):
        load_dataset(c, "train", input=TensorSpec(shape=(4,)))


def test_samples_that_do_not_fit_the_input_are_a_located_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "input: [1, 28, 28]\nmodel: {type: Flatten}\ntrain:\n  epochs: 1\n  data: Digits\n"
    )
    spec = specnet.load(spec_file)
    data = load_dataset(spec.train.data, "train", input=spec.input)
    assert data is not None
    with pytest.raises(specnet.SpecValidationError) as info:
        check_fits(data, "Digits (train split)", spec.inputs, spec.source)
    assert str(info.value) == (
        f"{spec_file}:5:9: train.data: Digits (train split) gives samples of shape [1, 8, 8] "
        "(float32), but the spec's input is shape [1, 28, 28] (float32)"
    )
    wrong_dtype = torch.utils.data.TensorDataset(
        torch.zeros(2, 1, 28, 28, dtype=torch.float64), torch.zeros(2)
    )
    with pytest.raises(specnet.SpecValidationError, match=r"shape \[1, 28, 28\] \(float64\)"):
        check_fits(wrong_dtype, "mine", spec.inputs)
    inputs_only = torch.utils.data.TensorDataset(torch.zeros(2, 1, 28, 28))
    with pytest.raises(
        specnet.SpecValidationError, match=r"\(input, target\) pairs, got a tuple of 1"
    ):
        check_fits(inputs_only, "mine", spec.inputs)
