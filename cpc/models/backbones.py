"""Standard backbones as the patch encoder: torchvision ResNets with GroupNorm, untrained.

For photos of 96-256 px a user expects a standard network, not only the small built-in
``ResNetEncoder``. :class:`TorchvisionEncoder` runs a torchvision ResNet (He et al., 2016) on
every patch of the grid in one batched call and keeps the encoder contract the tasks, the
evaluation and ``cpc.load_encoder`` rely on (``num_features``, ``patchify``, ``encode_grid``,
``forward_features``, ``pool``, ``forward``, ``in_channels``, ``patch_size``, ``patch_stride``):

    images (B, C, H, W) -> patches (B, Gh, Gw, C, P, P) -> ResNet trunk (B*Gh*Gw, D, h, w)
    -> mean over (h, w) -> latent grid (B, D, Gh, Gw)

Every BatchNorm is built as a GroupNorm (Wu & He, 2018, "Group Normalization": 32 groups),
which normalises within one patch: BatchNorm would mix the statistics of every patch of the
batch, so a patch's code would depend on its neighbours and CPC could read the answer from
them (Hénaff et al., 2019, CPC v2, replace BatchNorm for this reason). No pretrained weights
are loaded (``weights=None``): ImageNet weights come with BatchNorm statistics that mean
nothing after the swap, and nothing is downloaded.

In a ``cpc fit`` config, give ``in_channels``, ``patch_size`` and ``patch_stride`` explicitly:
jsonargparse keeps the default ``ResNetEncoder``'s values (1 channel, 8 px patches) for the
options both classes share when only the ``class_path`` changes (``--print_config`` shows it).

Example:
    >>> encoder = TorchvisionEncoder("resnet50", patch_size=64, patch_stride=32)
    >>> encoder.forward_features(torch.rand(2, 3, 256, 256)).shape  # 7x7 grid, as CPC v2
    torch.Size([2, 2048, 7, 7])
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, get_args

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cpc.models.encoder import PatchEncoder

Arch = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


class TorchvisionEncoder(PatchEncoder):
    """A torchvision ResNet, GroupNorm throughout, as the patch encoder.

    Args:
        arch: the torchvision ResNet: ``"resnet18"``/``"resnet34"`` (``D = 512``) or
            ``"resnet50"``/``"resnet101"``/``"resnet152"`` (``D = 2048``).
        in_channels: image channels (3 for photos); the first conv is rebuilt for any other.
        patch_size: patch side P in pixels. The ResNet divides it by 32 (by 8 with
            ``small_stem``) down to at least 1x1: 24-64 px suit the ImageNet stem.
        patch_stride: step between patches; ``patch_size // 2`` overlaps neighbours by half,
            as CPC does.
        small_stem: replace the 7x7 stride-2 conv and the max-pool by one 3x3 stride-1 conv,
            as SimCLR does for CIFAR: for patches under ~24 px, at ~16x the compute.
        norm_groups: GroupNorm groups (Wu & He: 32); 1 is LayerNorm over (C, h, w) of a patch.
        gradient_checkpointing: recompute each of the four stages in backward instead of
            storing its activations: less memory, about one more forward pass of compute.
        channels_last: keep activations in NHWC (faster convs with cuDNN under AMP).
        pool_size, compact_dim: the compact feature ``encoder(images)``, as in
            :class:`cpc.models.encoder.ResNetEncoder`: the grid averaged to
            ``pool_size x pool_size`` cells (1: the mean), PCA-whitened to ``compact_dim``
            values when that is set.
    """

    def __init__(
        self,
        arch: Arch = "resnet18",
        in_channels: int = 3,
        patch_size: int = 32,
        patch_stride: int = 16,
        small_stem: bool = False,
        norm_groups: int = 32,
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
        if arch not in get_args(Arch):
            raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(get_args(Arch))}")
        self.arch = arch

        def group_norm(channels: int) -> nn.GroupNorm:
            if channels % norm_groups:
                raise ValueError(f"norm_groups={norm_groups} must divide {channels} channels")
            return nn.GroupNorm(norm_groups, channels)

        import torchvision.models  # here: importing cpc.models stays plain torch

        net = getattr(torchvision.models, arch)(weights=None, norm_layer=group_norm)
        if small_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        # conv1, bn1, relu, maxpool, layer1..layer4; the classifier (avgpool, fc) is dropped
        self.trunk = nn.Sequential(OrderedDict(list(net.named_children())[:-2]))
        self.set_num_features(net.fc.in_features)  # D, channels of the latent grid

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``(N, C, P, P)`` in [0, 1] -> ``(N, D)``, mean-pooled over each patch."""
        x = (patches * 2 - 1).contiguous(memory_format=self.memory_format)
        for name, layer in self.trunk.named_children():
            stage = name.startswith("layer")
            if stage and self.gradient_checkpointing and self.training and x.requires_grad:
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x.mean(dim=(2, 3))  # (N, D, h, w) -> (N, D)
