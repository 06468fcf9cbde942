"""Load whole dataset splits as in-memory uint8 tensors, and a tiny Dataset over them.

Every loader returns ``(images, labels)``: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64
``(N,)`` (``-1`` where there is no label, as in STL-10's unlabeled split). Augmentation and patch
cutting happen later, batch-wise on the device, so a sample is just an index into these tensors.

The torchvision sets (Fashion-MNIST, MNIST, CIFAR-10, STL-10) are read with ``torchvision.datasets``
from the files torchvision expects under ``root`` (see ``data/README.md``); missing files are
downloaded at most once, and an offline failure becomes one :class:`DatasetNotFoundError` line
that says what to run. Image folders (``root/<class>/<image>``) are decoded once with PIL.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS

Split = Literal["train", "test", "unlabeled"]


class DatasetNotFoundError(RuntimeError):
    """A dataset's files are missing (or unusable) and could not be fetched."""


@dataclass(frozen=True)
class DatasetInfo:
    """What we know about a torchvision dataset before reading any file.

    Attributes:
        name: command-line name, as in ``python -m cpc.data.prepare NAME``.
        title: name for humans.
        folder: folder under ``root`` holding ``files``, as torchvision expects it.
        files: file names torchvision reads (uncompressed).
        num_channels: image channels C.
        image_size: image (H, W).
        class_names: label names, index = label.
        debian_package: Debian package shipping the files, if any.
    """

    name: str
    title: str
    folder: str
    files: tuple[str, ...]
    num_channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    debian_package: str | None = None


def _idx_files(cls: type[tvd.MNIST]) -> tuple[str, ...]:
    return tuple(os.path.splitext(name)[0] for name, _ in cls.resources)


_CIFAR, _STL = tvd.CIFAR10, tvd.STL10
DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        title="Fashion-MNIST",
        folder="FashionMNIST/raw",
        files=_idx_files(tvd.FashionMNIST),
        num_channels=1,
        image_size=(28, 28),
        class_names=tuple(tvd.FashionMNIST.classes),
        debian_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        folder="MNIST/raw",
        files=_idx_files(tvd.MNIST),
        num_channels=1,
        image_size=(28, 28),
        class_names=tuple(tvd.MNIST.classes),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        title="CIFAR-10",
        folder=_CIFAR.base_folder,
        files=tuple(f for f, _ in _CIFAR.train_list + _CIFAR.test_list)
        + (_CIFAR.meta["filename"],),
        num_channels=3,
        image_size=(32, 32),
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
    ),
    "stl10": DatasetInfo(
        name="stl10",
        title="STL-10",
        folder=_STL.base_folder,
        files=tuple(f for f, _ in _STL.train_list + _STL.test_list),
        num_channels=3,
        image_size=(96, 96),
        class_names=(
            "airplane",
            "bird",
            "car",
            "cat",
            "deer",
            "dog",
            "horse",
            "monkey",
            "ship",
            "truck",
        ),
    ),
}


class TensorImageDataset(Dataset):
    """A view of in-memory images: sample ``i`` is ``images[indices[i]]``.

    Args:
        images: uint8 ``(N, C, H, W)``, shared (not copied) between views.
        labels: int64 ``(N,)``.
        indices: which rows of ``images`` this view holds (default: all), int64 ``(M,)``.
        source: name of the split ``images`` came from (``"train"``, ``"test"``,
            ``"unlabeled"``); with ``indices`` it lets tests check that splits are disjoint.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None = None,
        source: str = "train",
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.indices = torch.arange(len(images)) if indices is None else indices.long()
        self.source = source

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        return self.images[j], int(self.labels[j])  # (C, H, W) uint8, label

    def __getitems__(self, batch: list[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched index and label look-ups (DataLoader's fetcher calls this): the default collate
        then stacks the row views into ``(images (B, C, H, W) uint8, labels (B,) int64)``.

        Row views, not one ``index_select``: that would copy twice (gather, then collate's stack)
        and its multi-threaded gather is slow on busy CPUs.
        """
        rows = self.indices[torch.as_tensor(batch)]  # (B,) source rows
        labels = self.labels[rows].tolist()
        return [(self.images[j], y) for j, y in zip(rows.tolist(), labels, strict=True)]


def missing_files(name: str, root: str | os.PathLike) -> list[str]:
    """Files of dataset ``name`` that torchvision would read but are not under ``root``."""
    info = DATASETS[name]
    folder = Path(root) / info.folder
    return [f for f in info.files if not (folder / f).is_file()]


def not_found_error(name: str, root: str | os.PathLike, reason: str) -> DatasetNotFoundError:
    """The one-line error for a missing dataset: what is missing, where, and what to run."""
    info = DATASETS[name]
    missing = missing_files(name, root) or list(info.files)
    more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
    fix = f"python -m cpc.data.prepare {name} --root {root}"
    if info.debian_package:
        apt = f"apt-get install {info.debian_package} && {fix}"
        how = f"run `{apt}`, or connect to the internet and run `{fix}`"
    else:
        how = (
            f"connect to the internet and run `{fix}`, or copy the files there (see data/README.md)"
        )
    where = Path(root) / info.folder
    return DatasetNotFoundError(
        f"{info.title} not found: missing {missing[0]}{more} in {where} ({reason}); {how}"
    )


def download(name: str, root: str | os.PathLike) -> Path:
    """Download dataset ``name`` with torchvision unless its files are already there.

    Returns:
        The folder holding the files.

    Raises:
        DatasetNotFoundError: the download failed (e.g. offline); torchvision's traceback is
            replaced by one line saying what to run.
    """
    info, root = DATASETS[name], str(root)
    if missing_files(name, root):
        try:
            if name == "stl10":
                tvd.STL10(root, split="test", download=True)
            elif name == "cifar10":
                tvd.CIFAR10(root, train=False, download=True)
            else:
                cls = tvd.FashionMNIST if name == "fashion_mnist" else tvd.MNIST
                cls(root, train=False, download=True)
        except Exception as err:  # any failure (URLError, md5 mismatch, disk) -> one clear line
            lines = str(err).strip().splitlines() or [type(err).__name__]
            reason = f"download failed: {lines[-1][:100]}"  # torchvision's last line: the cause
            raise not_found_error(name, root, reason) from None
        if missing_files(name, root):
            raise not_found_error(name, root, "download finished but files are still missing")
    return Path(root) / info.folder


def _ensure(name: str, root: str | os.PathLike, download_missing: bool) -> None:
    if not missing_files(name, root):
        return
    if not download_missing:
        raise not_found_error(name, root, "download=False")
    download(name, root)


class _STL10(tvd.STL10):
    """STL-10 that checks its files exist instead of hashing 2.6 GB on every split it opens
    (the download verifies the archive's md5 once)."""

    def _check_integrity(self) -> bool:
        return not missing_files("stl10", self.root)


def load_mnist_like(
    name: Literal["fashion_mnist", "mnist"], root: str, split: Split, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST or MNIST split ``"train"`` (60k) or ``"test"`` (10k): ``(N, 1, 28, 28)``."""
    if split not in ("train", "test"):
        raise ValueError(f"{name} has splits 'train' and 'test', got {split!r}")
    _ensure(name, root, download)
    cls = tvd.FashionMNIST if name == "fashion_mnist" else tvd.MNIST
    ds = cls(root, train=split == "train")
    return ds.data.unsqueeze(1), ds.targets.long()  # (N, 28, 28) -> (N, 1, 28, 28)


def load_fashion_mnist(root: str, split: Split, download: bool = True):
    """Fashion-MNIST (Xiao et al., 2017) split as ``(images (N, 1, 28, 28) uint8, labels (N,))``."""
    return load_mnist_like("fashion_mnist", root, split, download)


def load_mnist(root: str, split: Split, download: bool = True):
    """MNIST split as ``(images (N, 1, 28, 28) uint8, labels (N,))``."""
    return load_mnist_like("mnist", root, split, download)


def load_cifar10(root: str, split: Split, download: bool = True):
    """CIFAR-10 split ``"train"`` (50k) or ``"test"`` (10k) as ``(N, 3, 32, 32)`` uint8."""
    if split not in ("train", "test"):
        raise ValueError(f"cifar10 has splits 'train' and 'test', got {split!r}")
    _ensure("cifar10", root, download)
    ds = tvd.CIFAR10(root, train=split == "train")
    images = (
        torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    )  # (N, H, W, C) -> (N, C, H, W)
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def load_stl10(root: str, split: Split, download: bool = True):
    """STL-10 split ``"train"`` (5k), ``"test"`` (8k) or ``"unlabeled"`` (100k, labels -1).

    Images are ``(N, 3, 96, 96)`` uint8, a strided view of torchvision's array (no 2.7 GB copy).
    """
    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"stl10 has splits 'train', 'test', 'unlabeled', got {split!r}")
    _ensure("stl10", root, download)
    ds = _STL10(root, split=split)
    labels = torch.from_numpy(np.asarray(ds.labels).astype(np.int64))
    return torch.from_numpy(ds.data), labels  # (N, 3, 96, 96)


LOADERS = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "stl10": load_stl10,
}


def load_split(name: str, root: str, split: Split, download: bool = True):
    """Dispatch to the loader of dataset ``name`` (a key of :data:`DATASETS`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](root, split, download)


def find_classes(root: str | os.PathLike) -> list[str]:
    """Sorted class folder names of an image folder ``root/<class>/<image>``; no image is read."""
    root = Path(root)
    layout = f"expected {root}/<class>/<image>.jpg (see data/README.md)"
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; {layout}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(f"no class folders in image folder {root}; {layout}")
    return classes


def _decode(path: Path, image_size: int, mode: str) -> torch.Tensor | None:
    """Decode, resize the shorter side to ``image_size``, center-crop; ``None`` if unreadable."""
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    img = TF.center_crop(TF.resize(img, image_size), [image_size, image_size])
    return TF.pil_to_tensor(img)  # (C, S, S) uint8


def load_image_folder(
    root: str | os.PathLike,
    image_size: int,
    channels: int = 3,
    class_names: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an image folder ``root/<class>/<image>`` into memory once.

    Images are converted to RGB (``channels=3``) or grayscale (``channels=1``), their shorter side
    resized to ``image_size``, then center-cropped square. Everything is held in memory:
    ``N * channels * image_size**2`` bytes (100k RGB images at 64 px: 1.2 GB), so this suits
    small and medium folders. Unreadable or corrupt files are skipped with one warning counting
    them, so that one bad file among thousands does not stop a run; if none is readable, it fails.

    Args:
        root: the folder; files whose extension is not an image extension are ignored.
        image_size: side S of the square output images.
        channels: 3 (RGB) or 1 (grayscale).
        class_names: label order to use (e.g. the train folder's for a test folder); default:
            this folder's sorted class folders. A class folder not in this list is an error.

    Returns:
        ``(images (N, C, S, S) uint8, labels (N,) int64)``.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    root = Path(root)
    found = find_classes(root)
    names = found if class_names is None else list(class_names)
    if unknown := sorted(set(found) - set(names)):
        raise ValueError(f"class folders {unknown} in {root} are not among the classes {names}")
    files = [
        (path, names.index(c))
        for c in found
        for path in sorted((root / c).rglob("*"))
        if path.suffix.lower() in IMG_EXTENSIONS and path.is_file()
    ]
    if not files:
        ext = ", ".join(IMG_EXTENSIONS[:4])
        raise DatasetNotFoundError(f"no images ({ext}, ...) in {root}/<class>/; see data/README.md")
    decode = partial(_decode, image_size=image_size, mode="RGB" if channels == 3 else "L")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(decode, [path for path, _ in files]))
    bad = [path for (path, _), img in zip(files, decoded, strict=True) if img is None]
    if len(bad) == len(files):
        raise DatasetNotFoundError(
            f"all {len(files)} image files in {root} are unreadable, e.g. {bad[0]}"
        )
    if bad:
        warnings.warn(
            f"skipped {len(bad)} unreadable images in {root}, e.g. {bad[0]}", stacklevel=2
        )
    images = torch.stack([img for img in decoded if img is not None])  # (N, C, S, S)
    labels = torch.tensor(
        [y for (_, y), img in zip(files, decoded, strict=True) if img is not None]
    )
    return images, labels
