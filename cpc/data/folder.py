"""Your own images, ``root/<class>/<image>``: decoded once with PIL into memory at setup."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from cpc.data.datamodule import ImageDataModule, ShapeFromOptions
from cpc.data.datasets import DatasetNotFoundError
from cpc.data.splits import Source


class ImageFolderDataModule(ShapeFromOptions, ImageDataModule):
    """Your own images, ``root/<class>/<image>``, decoded once into memory at setup.

    Suits small and medium folders (memory: ``N * channels * image_size**2`` bytes); unreadable
    files are skipped with one warning (see :func:`cpc.data.folder.load_image_folder`).

    Args:
        root: train folder, one sub-folder per class; class names = sorted folder names.
        image_size: side S: shorter side resized to S, then center-cropped to S x S.
        channels: 3 (RGB) or 1 (grayscale).
        test_root: optional test folder with the same layout (class folders a subset of root's).
        batch_size: images per batch; the default 64 keeps a 64-px step of the default CPC task
            near 3.5 GB (its InfoNCE memory grows with the square of the batch: data/README.md).
        val_size: held out of ``root`` for validation: a fraction if < 1 (default 10%), else a
            number of images.
        num_workers: DataLoader workers (None = auto, see :class:`ImageDataModule`).
        seed: seed of the train/val split.
        device_data: training images on the GPU (see :class:`ImageDataModule`).
    """

    def __init__(
        self,
        root: str = "data/images",
        image_size: int = 64,
        channels: int = 3,
        test_root: str | None = None,
        batch_size: int = 64,
        val_size: float = 0.1,
        num_workers: int | None = None,
        seed: int = 0,
        device_data: bool | None = None,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        label_seed: int = 0,
    ) -> None:
        if channels not in (1, 3) or image_size < 1:
            raise ValueError(
                f"need channels 1 or 3 and image_size >= 1, got {channels}, {image_size}"
            )
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
        self.test_root = test_root
        self._image_size = image_size
        self._channels = channels
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        """Sorted class folder names of ``root`` (read on first use; no image is decoded)."""
        if self._class_names is None:
            self._class_names = find_classes(self.root)
        return self._class_names

    def _num_val(self, n: int) -> int:
        k = round(self.val_size * n) if self.val_size < 1 else int(self.val_size)
        if not 0 <= k < n:
            raise ValueError(f"val_size={self.val_size} must hold out 0 to {n - 1} of {n} images")
        return k

    def setup(self, stage: str | None = None) -> None:
        """As the base's; ``stage=None`` skips the test split when there is no test_root."""
        super().setup("fit" if stage is None and self.test_root is None else stage)

    def load_source(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        if source == "test" and self.test_root is None:
            raise ValueError("ImageFolderDataModule has no test split: set test_root")
        folder = self.test_root if source == "test" else self.root
        return load_image_folder(folder, self._image_size, self._channels, self.class_names)


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
