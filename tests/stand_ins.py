"""Small generated stand-ins for the datasets, written in torchvision's own file formats, so the
data modules read them as they read the real ones (``tests/data/test_datamodule.py``, the
shipped configs' ``tests/test_configs.py``)."""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd

#: images of the MNIST stand-ins' train and test files
N_TRAIN, N_TEST = 300, 100


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST idx format: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 dims, raw bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The idx files' arrays, ``{file name: array}``: random images and labels in 10 classes."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0], images[:, 0, 1] = 0, 255  # the float range is exactly [0, 1]
        arrays[f"{prefix}-images-idx3-ubyte"] = images
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    return arrays


def make_mnist(root: Path, folder: str = "FashionMNIST") -> dict[str, np.ndarray]:
    """MNIST-format idx files of N_TRAIN + N_TEST random images in ``root/<folder>/raw``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = mnist_arrays()
    for name, array in arrays.items():
        write_idx(raw / name, array)
    return arrays


def make_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 60) -> np.ndarray:
    """Pickled batches as in cifar-10-python.tar.gz; torchvision's md5 list points at them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, obj: dict) -> list[str]:
        (folder / name).write_bytes(pickle.dumps(obj))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    data = rng.integers(0, 256, (6, per_batch, 3 * 32 * 32), dtype=np.uint8)  # channel planes
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    listed = [
        dump(name, {"data": data[i], "labels": rng.integers(0, 10, per_batch).tolist()})
        for i, name in enumerate(batches)
    ]
    meta = dump("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    monkeypatch.setattr(tvd.CIFAR10, "train_list", listed[:5])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", listed[5:])
    monkeypatch.setattr(
        tvd.CIFAR10, "meta", {"filename": meta[0], "key": "label_names", "md5": meta[1]}
    )
    return data


def make_stl10(root: Path, n_train: int = 40, n_unlabeled: int = 30, n_test: int = 20) -> None:
    """stl10_binary/*_X.bin and *_y.bin of random 96x96 RGB images (labels 1-based, as STL's)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("unlabeled", n_unlabeled), ("test", n_test)):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            rng.integers(1, 11, n, dtype=np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based
