"""Patch encoder: a small ResNet applied to every patch of the grid in one batched call.

Images ``(B, C, H, W)`` -> patches ``(B*G*G, C, P, P)`` -> vectors ``(B*G*G, D)`` -> latent
grid ``(B, D, G, G)``. GroupNorm (default) or LayerNorm normalise within one patch, so no
information passes between patches or images; BatchNorm mixes the batch and is only
available as an explicit choice.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from cpc.models.patches import extract_patches
from cpc.models.projection import WhitenedPCA

Norm = Literal["group", "layer", "batch"]


def make_norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, h, w) of one patch
    if kind == "batch":
        return nn.BatchNorm2d(channels)  # leaks across patches: documented opt-in only
    raise ValueError(f"unknown norm {kind!r}: choose 'group', 'layer' or 'batch'")


def check_group_widths(norm: Norm, width: int, num_stages: int) -> None:
    """Raise unless the stem's and every stage's channels ``width * 2**i`` split into
    ``make_norm``'s ``min(8, channels)`` groups: below 8 or a multiple of 8."""
    if norm != "group":
        return
    for i in range(max(num_stages, 1)):  # the stem has stage 0's width
        channels = width * 2**i
        if channels > 8 and channels % 8:
            raise ValueError(
                f"norm='group' splits channels into 8 groups, but width={width} gives stage {i} "
                f"{channels} channels: set width to a multiple of 8 (or norm='layer')"
            )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            make_norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            make_norm(norm, cout),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class PatchEncoder(nn.Module):
    """What every patch encoder shares: patches cut batch-wise, one call of
    :meth:`encode_patches` (the subclass's network) for the whole grid, and the compact
    feature ``encoder(images)``: the grid averaged to ``pool_size x pool_size`` cells, then
    PCA-whitened to ``compact_dim`` values when that is set (:mod:`cpc.models.projection`).

    Subclasses build their network, then call :meth:`set_num_features` with ``D``.
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        patch_stride: int,
        pool_size: int = 1,
        compact_dim: int = 0,
        gradient_checkpointing: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1 (1: the mean over the grid), got {pool_size}")
        if compact_dim < 0:
            raise ValueError(f"compact_dim must be >= 0 (0: no projection), got {compact_dim}")
        self.in_channels, self.patch_size, self.patch_stride = in_channels, patch_size, patch_stride
        self.pool_size, self.compact_dim = pool_size, compact_dim
        self.gradient_checkpointing = gradient_checkpointing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def set_num_features(self, num_features: int) -> None:
        """``D``, the channels of the latent grid, once the subclass's network exists.

        Raises:
            ValueError: ``compact_dim`` is more than the pooled grid's ``D * pool_size**2``
                values (the end-of-fit PCA could not keep that many directions).
        """
        pooled = num_features * self.pool_size**2  # values of the pooled grid
        if self.compact_dim > pooled:
            raise ValueError(
                f"compact_dim {self.compact_dim} is more than the {pooled} values of the pooled "
                f"grid (D={num_features} x pool_size**2={self.pool_size**2}): lower compact_dim "
                f"to at most {pooled}, or raise pool_size"
            )
        self.num_features = num_features
        self.compact_features = self.compact_dim or pooled
        self.compact_projection = WhitenedPCA(self.compact_dim) if self.compact_dim else None
        self.to(memory_format=self.memory_format)

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``(N, C, P, P)`` in [0, 1] -> ``(N, D)``: the subclass's network."""
        raise NotImplementedError

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``(B, C, H, W)`` -> patches ``(B, Gh, Gw, C, P, P)``."""
        if images.ndim == 4 and images.shape[1] != self.in_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels but the encoder expects "
                f"{self.in_channels}: set encoder in_channels to match the data"
            )
        return extract_patches(images, self.patch_size, self.patch_stride)

    def encode_grid(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, Gh, Gw, C, P, P)`` -> latent grid ``(B, D, Gh, Gw)``, one batched call."""
        b, gh, gw = patches.shape[:3]
        # (B, Gh, Gw, C, P, P) -> (B*Gh*Gw, C, P, P): every patch of the batch in one call
        z = self.encode_patches(patches.reshape(b * gh * gw, *patches.shape[3:]))  # (B*Gh*Gw, D)
        return z.view(b, gh, gw, -1).permute(0, 3, 1, 2)  # -> (B, Gh, Gw, D) -> (B, D, Gh, Gw)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``(B, C, H, W)`` -> latent grid ``(B, D, Gh, Gw)``."""
        return self.encode_grid(self.patchify(images))

    def pool(self, grid: torch.Tensor) -> torch.Tensor:
        """Latent grid ``(B, D, Gh, Gw)`` -> averaged to ``pool_size x pool_size`` cells and
        flattened, ``(B, D * pool_size**2)``: the compact feature before its projection."""
        return F.adaptive_avg_pool2d(grid, self.pool_size).flatten(1)  # (B, D, s, s) -> (B, D*s*s)

    def compact(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled grid ``(B, D * pool_size**2)`` -> compact feature ``(B, compact_features)``:
        its PCA whitening when ``compact_dim`` is set, else itself."""
        if self.compact_projection is None:
            return pooled
        return self.compact_projection(pooled)

    def fit_compact(self, pooled: torch.Tensor) -> None:
        """Fit the compact projection on pooled grids ``(N, D * pool_size**2)`` of training
        images (no labels); nothing to fit without ``compact_dim``."""
        if self.compact_projection is not None:
            self.compact_projection.fit(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> the compact feature ``(B, compact_features)``: the
        latent grid averaged to ``pool_size x pool_size`` cells (the mean for 1), then
        PCA-whitened when ``compact_dim`` is set."""
        return self.compact(self.pool(self.forward_features(images)))


class ResNetEncoder(PatchEncoder):
    """ResNet-style patch encoder with ``num_features`` and ``forward_features``.

    Args:
        in_channels: image channels (1 for Fashion-MNIST, 3 for CIFAR/STL).
        width: channels of the first stage; each later stage doubles them. With
            ``norm="group"`` (8 groups) every stage's channels must be below 8 or a
            multiple of 8: a multiple of 8 always is.
        stages: residual blocks per stage; every stage after the first halves the resolution.
        norm: "group" (default), "layer", or "batch" (leaks between patches).
        patch_size: patch side P in pixels. patch_stride: step between patches.
        stem_stride: stride of the first conv. 2 (default) halves an 8x8 patch to 4x4 at once,
            4x fewer FLOPs than stride 1 for the same width.
        gradient_checkpointing: recompute each residual block in backward instead of storing
            its activations: less memory, about one more forward pass of compute.
        channels_last: keep activations in NHWC, which some conv kernels (cuDNN with AMP,
            oneDNN at small batch) run faster.
        pool_size: ``forward`` (the compact feature, what ``encoder(images)`` returns) averages
            the latent grid down to ``pool_size x pool_size`` cells and flattens them:
            ``D * pool_size**2`` values. 1 (default) is the mean over the grid, the papers'
            protocol, blind to where a code occurs; 2 keeps which quadrant holds which code,
            which matters on centred, aligned images such as Fashion-MNIST.
        compact_dim: 0 (default): the compact feature is the pooled grid. Otherwise it is
            the pooled grid's PCA whitening to ``compact_dim`` values
            (:class:`cpc.models.projection.WhitenedPCA`), fitted on the training images at
            the end of ``cpc fit`` (or by :meth:`fit_compact`) and saved with the weights.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        stages: tuple[int, ...] = (1, 1),
        norm: Norm = "group",
        patch_size: int = 8,
        patch_stride: int = 4,
        stem_stride: int = 2,
        gradient_checkpointing: bool = False,
        channels_last: bool = False,
        pool_size: int = 1,
        compact_dim: int = 0,
    ) -> None:
        super().__init__(
            in_channels,
            patch_size,
            patch_stride,
            pool_size,
            compact_dim,
            gradient_checkpointing,
            channels_last,
        )
        check_group_widths(norm, width, len(stages))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False),
            make_norm(norm, width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        cin = width
        for i, depth in enumerate(stages):
            cout = width * 2**i
            for j in range(depth):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, norm))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.set_num_features(cin)  # D, channels of the latent grid

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``(N, C, P, P)`` in [0, 1] -> ``(N, D)``, mean-pooled over each patch."""
        x = self.stem((patches * 2 - 1).contiguous(memory_format=self.memory_format))
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x.mean(dim=(2, 3))  # (N, D, h, w) -> (N, D)
