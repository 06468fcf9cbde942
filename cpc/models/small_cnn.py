"""A plain small CNN on whole images: the from-scratch reference of few-label training.

Not a patch encoder (no grid of patches, BatchNorm over the batch is fine on whole images):
it stands for what a user would train with labels alone. It keeps the part of the encoder
contract that :class:`cpc.finetune.FineTuneModule` reads: ``in_channels``, ``num_features``,
``pool_size`` and ``forward_features``.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallCNN(nn.Module):
    """Two stages of two 3x3 conv-BN-ReLU layers, each followed by 2x2 max-pooling.

    Args:
        in_channels: image channels.
        width: channels of the first stage; the second has twice as many (``num_features``).
        pool_size: the classifier reads the feature map averaged to ``pool_size x pool_size``.

    Shape:
        ``forward_features``: ``(B, C, H, W)`` -> ``(B, 2 * width, H // 4, W // 4)``.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, pool_size: int = 2) -> None:
        super().__init__()
        self.in_channels, self.pool_size, self.num_features = in_channels, pool_size, 2 * width
        self.body = nn.Sequential(
            *_conv(in_channels, width),
            *_conv(width, width),
            nn.MaxPool2d(2),
            *_conv(width, 2 * width),
            *_conv(2 * width, 2 * width),
            nn.MaxPool2d(2),
        )

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``(B, C, H, W)`` -> feature map ``(B, 2 * width, H // 4, W // 4)``."""
        return self.body(images * 2 - 1)
