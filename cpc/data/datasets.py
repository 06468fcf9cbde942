"""In-memory uint8 image splits: a tiny Dataset over them, and the missing-data error.

Every data module loads a split as ``(images, labels)``: ``images`` uint8 ``(N, C, H, W)``,
``labels`` int64 ``(N,)`` (``-1`` where there is no label, as in STL-10's unlabeled split).
Augmentation and patch cutting happen later, batch-wise on the device, so a sample is just an
index into these tensors. Where the tensors come from: :mod:`cpc.data.catalog` (torchvision
sets) and :mod:`cpc.data.folder` (image folders); fetching files: :mod:`cpc.data.prepare`.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(RuntimeError):
    """A dataset's files are missing (or unusable) and could not be fetched."""


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
