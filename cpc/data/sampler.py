"""A shuffling sampler that can start mid-epoch: the data order of an exact resume.

Epoch ``e`` visits the images in ``torch.randperm(n)`` drawn from a generator seeded with
``(seed, e)``: the order is a pure function of the seed and the epoch, drawn from no global
random state, so validation or a new DataLoader iterator never shifts it. ``start`` skips the
images already trained on in that epoch (a resumed run sets it once; the next epoch starts at
0). Lightning calls ``set_epoch`` at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableRandomSampler(Sampler[int]):
    """Indices ``0..num_samples-1`` in a fresh order every epoch, resumable at any position.

    Args:
        num_samples: dataset size ``n``.
        seed: seed of every epoch's order (``cpc fit`` takes it from ``seed_everything``).

    Example:
        >>> sampler = ResumableRandomSampler(10, seed=0)
        >>> sampler.set_epoch(3); sampler.start = 4  # epoch 3, after its first 4 images
        >>> list(sampler) == list(ResumableRandomSampler(10, seed=0).order(3)[4:])
        True
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.start = 0  # images of this epoch to skip, once

    def order(self, epoch: int) -> list[int]:
        """Epoch ``epoch``'s order of all ``num_samples`` indices."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        yield from self.order(self.epoch)[start:]

    def __len__(self) -> int:
        """The whole epoch: Lightning counts the batches of a resumed epoch from where it was."""
        return self.num_samples
