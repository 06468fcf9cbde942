"""The torchvision datasets, one data module class each: the class *is* the registry entry.

A class says where its files live under ``root`` (``folder``, ``files``), what the images look
like (``num_channels``, ``image_size``, ``class_names``), how to fetch the files (``fetch``:
torchvision's download; ``debian_package``/``debian_dir`` for a Debian copy) and how to read a
source split (``read``). :mod:`cpc.data.prepare` finds every subclass by its ``name``, so adding
a dataset is one class here (or anywhere imported) plus a config naming its ``class_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torchvision import datasets as tvd

from cpc.data.datamodule import ImageDataModule
from cpc.data.datasets import DatasetNotFoundError
from cpc.data.fetch import fetch_files, missing_files, not_found_error
from cpc.data.splits import Source


class TorchvisionDataModule(ImageDataModule):
    """A dataset torchvision reads from ``root/folder/files``; subclasses fill in the class
    attributes below, ``fetch`` and ``read``."""

    name: ClassVar[str]  # python -m cpc.data.prepare NAME
    title: ClassVar[str]  # for humans
    folder: ClassVar[str]  # under root, as torchvision expects it
    files: ClassVar[tuple[str, ...]]  # what torchvision reads there (uncompressed)
    sources: ClassVar[tuple[Source, ...]] = ("train", "test")
    debian_package: ClassVar[str | None] = None  # apt-get install it ...
    debian_dir: ClassVar[Path | None] = None  # ... and the gzipped files appear here

    @classmethod
    def fetch(cls, root: str) -> None:
        """Download the files with torchvision (needs the internet)."""
        raise NotImplementedError

    def read(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W) uint8, labels (N,) int64)`` of one source, from the files."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Fetch the files into ``root``, whose parent folder must exist: a mistyped
        ``--data.root /typo/fm`` is refused, not created and filled with a copy of the
        dataset (a new ``data`` folder in an existing one is made)."""
        if not Path(self.root).absolute().parent.is_dir():
            raise DatasetNotFoundError(
                f"data.root {self.root} does not exist, nor its parent folder: fix --data.root, "
                "or create the folder "
                f"(or run `python -m cpc.data.prepare {self.name} --root {self.root}`) to have "
                f"{self.title} prepared there"
            )
        fetch_files(type(self), self.root, allow_apt=False, allow_download=True)

    def load_source(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        """No download here: prepare_data runs on one process per node, setup on every rank."""
        if source not in self.sources:
            raise ValueError(f"{self.name} has sources {self.sources}, got {source!r}")
        if missing_files(type(self), self.root):
            raise not_found_error(type(self), self.root, "download=False")
        return self.read(source)


def registry() -> dict[str, type[TorchvisionDataModule]]:
    """Every torchvision data module class defined so far, by ``name``."""
    found, todo = {}, [TorchvisionDataModule]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if "name" in vars(sub):
                found[sub.name] = sub
    return found


class _MNISTLike(TorchvisionDataModule):
    """The idx-file layout of MNIST and Fashion-MNIST: 60k train / 10k test, 1x28x28."""

    tv_class: ClassVar[type[tvd.MNIST]]
    num_channels = 1
    image_size = (28, 28)

    @classmethod
    def fetch(cls, root: str) -> None:
        cls.tv_class(root, train=False, download=True)

    def read(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.tv_class(self.root, train=source == "train")
        return ds.data.unsqueeze(1), ds.targets.long()  # (N, 28, 28) -> (N, 1, 28, 28)


def _idx_files(cls: type[tvd.MNIST]) -> tuple[str, ...]:
    return tuple(Path(name).stem for name, _ in cls.resources)


class FashionMNISTDataModule(_MNISTLike):
    """Fashion-MNIST (Xiao et al., 2017): 60k train / 10k test, 1x28x28, 10 classes."""

    name, title, folder = "fashion_mnist", "Fashion-MNIST", "FashionMNIST/raw"
    tv_class = tvd.FashionMNIST
    files = _idx_files(tvd.FashionMNIST)
    class_names = list(tvd.FashionMNIST.classes)
    debian_package = "dataset-fashion-mnist"
    debian_dir = Path("/usr/share/datasets/fashion-mnist")


class MNISTDataModule(_MNISTLike):
    """MNIST: 60k train / 10k test, 1x28x28, 10 classes."""

    name, title, folder = "mnist", "MNIST", "MNIST/raw"
    tv_class = tvd.MNIST
    files = _idx_files(tvd.MNIST)
    class_names = list(tvd.MNIST.classes)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10: 50k train / 10k test, 3x32x32, 10 classes (md5-checked by torchvision)."""

    name, title, folder = "cifar10", "CIFAR-10", tvd.CIFAR10.base_folder
    files = (
        *(f for f, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list),
        tvd.CIFAR10.meta["filename"],
    )
    num_channels, image_size = 3, (32, 32)
    class_names = [
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
    ]

    @classmethod
    def fetch(cls, root: str) -> None:
        tvd.CIFAR10(root, train=False, download=True)

    def read(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        ds = tvd.CIFAR10(self.root, train=source == "train")
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        return images, torch.tensor(ds.targets, dtype=torch.int64)


class _STL10(tvd.STL10):
    """STL-10 that checks its files exist instead of hashing 2.6 GB on every split it opens
    (the download verifies the archive's md5 once)."""

    def _check_integrity(self) -> bool:
        return all((Path(self.root) / self.base_folder / f).is_file() for f in STL10_FILES)


STL10_FILES = tuple(f for f, _ in tvd.STL10.train_list + tvd.STL10.test_list)


class STL10DataModule(TorchvisionDataModule):
    """STL-10 (Coates et al., 2011): pretrain on 100k unlabeled + labelled train, 3x96x96.

    ``val_size`` is held out of the 5k labelled train images (default 1000, leaving 4000 for
    the probe); the unlabeled images are for pretraining only (labels -1).
    """

    name, title, folder = "stl10", "STL-10", tvd.STL10.base_folder
    files = STL10_FILES
    sources = ("train", "test", "unlabeled")
    extra_pretrain_sources = ("unlabeled",)
    num_channels, image_size = 3, (96, 96)
    class_names = [
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
    ]

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 256,
        val_size: int = 1000,
        num_workers: int | None = None,
        seed: int = 0,
        device_data: bool | None = None,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(
            root,
            batch_size,
            val_size,
            num_workers,
            seed,
            device_data,
            labels_per_class,
            label_fraction,
            label_seed,
        )

    @classmethod
    def fetch(cls, root: str) -> None:
        tvd.STL10(root, split="test", download=True)

    def read(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        """A strided view of torchvision's array (no 2.7 GB copy): ``(N, 3, 96, 96)``."""
        ds = _STL10(self.root, split=source)
        return torch.from_numpy(ds.data), torch.from_numpy(np.asarray(ds.labels).astype(np.int64))
