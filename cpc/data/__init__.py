"""Data: in-memory uint8 image datasets and LightningDataModules (pick one in a config with
``class_path: cpc.data.FashionMNISTDataModule``). Batches arrive on the device as
``(images (B, C, H, W) float32 in [0, 1], labels (B,) int64)``; labels are -1 where unknown.

datamodule.py (the base: loaders, Lightning hooks; which images each split holds is splits.py)
<- catalog.py (torchvision sets, one class each) and folder.py (image folders); fetch.py
fetches files (prepare.py: the command); datasets.py holds the in-memory Dataset.
streaming.py streams litdata chunks (larger than memory) that stream_prepare.py writes; it is
imported on first use of ``cpc.data.StreamingDataModule`` (litdata is slow to import).
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
    "StreamingDataModule",
    "TensorImageDataset",
    "TorchvisionDataModule",
    "load_image_folder",
]


def __getattr__(name: str):
    if name == "StreamingDataModule":
        from cpc.data.streaming import StreamingDataModule

        return StreamingDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
