"""Seeded random subsets of an eval split: a fixed kNN bank, the images a projection is fitted on.

The same ``(n, size, seed)`` always keeps the same rows, in increasing order, so a subset of
a loader and the rows of features already extracted from the whole loader name the same
images (:func:`subset_rows` is what :func:`subset_loader` keeps).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset


def subset_loader(loader: DataLoader, size: int, seed: int = 0) -> DataLoader:
    """A loader over a seeded random subset of at most ``size`` images of ``loader``'s
    dataset, in dataset order, with its batch size and workers (a fixed kNN bank, a PCA fit)."""
    keep = subset_rows(len(loader.dataset), size, seed)
    return DataLoader(
        Subset(loader.dataset, keep.tolist()),
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def subset_rows(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """The rows :func:`subset_loader` keeps of ``n``: a seeded random ``size`` of them (all
    when fewer), in increasing order, ``(min(n, size),)``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values
