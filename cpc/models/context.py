"""Context networks: latent grid ``(B, D, G, G)`` -> context grid ``(B, D, G, G)``.

Every network is causal over rows: the context at row ``r`` depends only on latent rows
``<= r``, so it can predict rows ``r + k`` (k >= 1) without seeing them. Normalisation is
per position (LayerNorm over channels), never over the grid, which would leak future rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each grid position of ``(B, D, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, D, H, W) -> (B, H, W, D): channels last for LayerNorm
        return super().forward(x).permute(0, 3, 1, 2)  # (B, H, W, D) -> (B, D, H, W)


class CausalConv2d(nn.Conv2d):
    """3x3-style conv whose output row r sees input rows r-kh+1..r (PixelCNN, CPC v2)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            # an even k would be padded by k // 2 on each side, k in all: (W + 1) columns out
            raise ValueError(
                f"kernel_size must be odd (the kernel is centred on its column), got "
                f"{kernel_size}: use 3 or 5"
            )
        super().__init__(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        # pad (left, right, top, bottom): all padding on top keeps the conv causal over rows
        return super().forward(F.pad(x, (k // 2, k // 2, k - 1, 0)))


class MaskedConvContext(nn.Module):
    """Residual stack of row-causal convolutions (CPC v2's PixelCNN-style context)."""

    def __init__(self, dim: int, blocks: int = 3, kernel_size: int = 3) -> None:
        super().__init__()
        # named `blocks`, not `layers`: jsonargparse carries same-named init_args over when a
        # config switches the context class, which would give GRUContext 3 layers silently
        self.blocks = nn.ModuleList(
            nn.Sequential(ChannelLayerNorm(dim), nn.ReLU(), CausalConv2d(dim, kernel_size))
            for _ in range(blocks)
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:  # (B, D, G, G)
        x = latents
        for block in self.blocks:
            x = x + block(x)
        return x


class GRUContext(nn.Module):
    """A GRU down each column of the grid (CPC v1's autoregressive model, over rows)."""

    def __init__(self, dim: int, layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:  # (B, D, H, W)
        b, d, h, w = latents.shape
        seq = latents.permute(0, 3, 2, 1).reshape(b * w, h, d)  # -> (B, W, H, D) -> (B*W, H, D)
        out, _ = self.gru(seq)  # (B*W, H, D): one sequence down each column
        return out.reshape(b, w, h, d).permute(0, 3, 2, 1)  # -> (B, W, H, D) -> (B, D, H, W)


class TransformerContext(nn.Module):
    """Causal Transformer over the grid in raster order, through scaled_dot_product_attention.

    Raster-order causality (token (r, c) sees (r', c') with r' < r, or r' = r and c' <= c)
    implies row causality, and ``is_causal=True`` selects FlashAttention kernels on GPU.
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, max_grid: int = 16) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.max_grid = max_grid
        self.position = nn.Parameter(torch.zeros(max_grid * max_grid, dim))
        self.norms1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.norms2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(layers))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            for _ in range(layers)
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:  # (B, D, H, W)
        b, d, h, w = latents.shape
        if h > self.max_grid or w > self.max_grid:
            raise ValueError(f"grid {h}x{w} exceeds max_grid={self.max_grid}: raise max_grid")
        # (M*M, D) -> (M, M, D) with M = max_grid -> top-left (H, W, D) -> (H*W, D), raster order
        pos = self.position.view(self.max_grid, self.max_grid, d)[:h, :w].reshape(h * w, d)
        x = latents.flatten(2).transpose(1, 2) + pos  # (B, D, H, W) -> (B, D, T) -> (B, T=H*W, D)
        for norm1, qkv, proj, norm2, mlp in zip(
            self.norms1, self.qkv, self.proj, self.norms2, self.mlp, strict=True
        ):
            # (B, T, 3*D) -> (B, T, 3, nh, hs) -> q, k, v: (B, T, nh, hs) each, hs = D / nh
            q, k, v = qkv(norm1(x)).view(b, h * w, 3, self.heads, -1).unbind(2)
            # (B, T, nh, hs) -> (B, nh, T, hs)
            attn = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
            # (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, D): the heads side by side again
            x = x + proj(attn.transpose(1, 2).reshape(b, h * w, d))
            x = x + mlp(norm2(x))
        return x.transpose(1, 2).reshape(b, d, h, w)  # (B, T, D) -> (B, D, T) -> (B, D, H, W)
