"""Batches sliced from a dataset that lives on the device: no DataLoader workers, no host copies.

An in-memory uint8 dataset (Fashion-MNIST's 55k training images are 43 MB) fits on any GPU.
Copied there once, every batch is one ``index_select`` on the device, as fast CIFAR-10
trainers do, instead of a worker collating rows on the CPU and a host-to-device copy per step.
Augmentation and patches already run batch-wise on the device (:mod:`cpc.models.augment`).

The order comes from a ``sampler`` (any iterable of indices, e.g. the data module's resumable
sampler, so an exact resume works as with a DataLoader; Lightning calls its ``set_epoch``), or
is a fresh permutation drawn on the device every pass (``shuffle``), or is ``0..N-1``.
One process only: DDP's sampler injection does not apply to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch


class DeviceLoader:
    """Yields ``(images (B, C, H, W) uint8, labels (B,) int64)`` sliced on ``device``.

    Args:
        images: uint8 ``(N, C, H, W)``; copied to ``device`` once.
        labels: ``(N,)``; copied to ``device`` once.
        batch_size: images per batch.
        drop_last: drop the last batch when smaller than ``batch_size``.
        sampler: the order of the indices of one pass (its length may be under ``N``, e.g.
            a resumed epoch); None: ``shuffle`` decides.
        shuffle: without a sampler, a new permutation every pass, drawn on the device from
            ``generator``; else the indices in order.
        device: where the data lives and batches are made.
        generator: of the permutations (on ``device``); default a fresh one seeded with 0.

    Example:
        >>> loader = DeviceLoader(images, labels, 128, shuffle=True, device="cuda")
        >>> for images, labels in loader: ...   # (128, C, H, W) uint8 on the GPU
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        drop_last: bool = False,
        sampler: Iterable[int] | None = None,
        shuffle: bool = False,
        device: torch.device | str = "cuda",
        generator: torch.Generator | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"need uint8 images (N, C, H, W) and labels (N,), got {images.dtype} "
                f"{tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.long().to(self.device)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.shuffle = shuffle
        self.generator = generator or torch.Generator(self.device).manual_seed(0)

    def order(self) -> torch.Tensor:
        """The indices of one pass, ``(M,)`` int64 on the device."""
        if self.sampler is not None:
            return torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.device)
        n = len(self.images)
        if self.shuffle:
            return torch.randperm(n, device=self.device, generator=self.generator)
        return torch.arange(n, device=self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        end = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, end, self.batch_size):
            rows = order[start : start + self.batch_size]  # (B,)
            yield self.images.index_select(0, rows), self.labels.index_select(0, rows)

    def __len__(self) -> int:
        """Batches of a full pass (of the sampler's length, else of ``N``)."""
        n = len(self.sampler) if self.sampler is not None else len(self.images)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
