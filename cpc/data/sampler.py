"""A shuffling sampler that can start mid-epoch: the data order of an exact resume, on every rank.

Epoch ``e`` visits the images in ``torch.randperm(n)`` drawn from a generator seeded with
``(seed, e)``: the order is a pure function of the seed and the epoch, drawn from no global
random state, so validation or a new DataLoader iterator never shifts it. Under DDP, rank ``r``
of ``R`` takes every ``R``-th index of that order from the ``r``-th, ``n // R`` of them (the
same number on every rank). ``start`` skips the images this rank already trained on in that
epoch (a resumed run sets it once; the next epoch starts at 0). Lightning calls ``set_epoch``
at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


class ResumableRandomSampler(DistributedSampler):
    """This rank's indices of ``0..size-1``, in a fresh order every epoch, resumable anywhere.

    A :class:`~torch.utils.data.DistributedSampler`, so that under DDP Lightning uses it as it
    is (it would wrap any other sampler in one that shards its order again and knows no
    position to resume from).

    Args:
        size: dataset size ``n``.
        seed: seed of every epoch's order (``cpc fit`` takes it from ``seed_everything``; the
            same on every rank).
        num_replicas: DDP world size ``R`` (a resumed run needs the same).
        rank: this process's global rank ``r``.

    Example:
        >>> sampler = ResumableRandomSampler(10, seed=0)
        >>> sampler.set_epoch(3); sampler.start = 4  # epoch 3, after its first 4 images
        >>> list(sampler) == list(ResumableRandomSampler(10, seed=0).order(3)[4:])
        True
    """

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0  # images of this epoch to skip, once

    def order(self, epoch: int) -> list[int]:
        """This rank's indices in epoch ``epoch`` (all ``n`` of them on one process)."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        order = torch.randperm(len(self.dataset), generator=generator)[: self.total_size]
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        yield from self.order(self.epoch)[start:]

    def __len__(self) -> int:
        """This rank's whole epoch: Lightning counts the batches of a resumed epoch from where
        it was."""
        return self.num_samples
