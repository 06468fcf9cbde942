"""Data: in-memory uint8 image datasets and LightningDataModules (pick one in a config with
``class_path: cpc.data.FashionMNISTDataModule``). Batches arrive on the device as
``(images (B, C, H, W) float32 in [0, 1], labels (B,) int64)``; labels are -1 where unknown.

datamodule.py (the base: splits, loaders) <- catalog.py (torchvision sets, one class each) and
folder.py (image folders); prepare.py fetches files; datasets.py holds the in-memory Dataset.
"""

from cpc.data.catalog import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    STL10DataModule,
    TorchvisionDataModule,
)
from cpc.data.datamodule import ImageDataModule
from cpc.data.datasets import DatasetNotFoundError, TensorImageDataset
from cpc.data.folder import ImageFolderDataModule, load_image_folder

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "STL10DataModule",
    "TensorImageDataset",
    "TorchvisionDataModule",
    "load_image_folder",
]
