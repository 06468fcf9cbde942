"""Data: in-memory uint8 image datasets and LightningDataModules (pick one in a config with
``class_path: cpc.data.FashionMNISTDataModule``). Batches arrive on the device as
``(images (B, C, H, W) float32 in [0, 1], labels (B,) int64)``; labels are -1 where unknown."""

from cpc.data.datamodule import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    STL10DataModule,
)
from cpc.data.datasets import (
    DatasetNotFoundError,
    TensorImageDataset,
    load_image_folder,
    load_split,
)

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "STL10DataModule",
    "TensorImageDataset",
    "load_image_folder",
    "load_split",
]
