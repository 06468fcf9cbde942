"""Image -> overlapping patch grid, batch-wise with ``unfold`` (no per-sample Python).

CPC (van den Oord et al., 2018; Hénaff et al., 2019) encodes every patch of an image
grid independently, then predicts latents of patches below from the rows above.
"""

from __future__ import annotations

import torch


def grid_size(image_size: int, patch_size: int, stride: int) -> int:
    """Number of patches along one side: ``(image_size - patch_size) // stride + 1``.

    Raises:
        ValueError: if the image is smaller than one patch.
    """
    if patch_size < 1 or stride < 1:
        raise ValueError(f"patch_size and stride must be >= 1, got {patch_size} and {stride}")
    if image_size < patch_size:
        raise ValueError(
            f"image side {image_size} is smaller than one patch ({patch_size}): "
            "lower the encoder's patch_size or use larger images"
        )
    return (image_size - patch_size) // stride + 1


def extract_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Cut an overlapping grid of square patches from each image.

    Patch ``(i, j)`` is exactly ``images[:, :, i*stride : i*stride+patch_size,
    j*stride : j*stride+patch_size]``; pixels beyond the last full patch are dropped.

    Args:
        images: ``(B, C, H, W)``.
        patch_size: side ``P`` of a patch, in pixels.
        stride: step between neighbouring patches; ``stride = P // 2`` gives CPC's half overlap.

    Returns:
        ``(B, Gh, Gw, C, P, P)`` patches, row-major over the grid.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    rows = grid_size(height, patch_size, stride)
    cols = grid_size(width, patch_size, stride)
    patches = images.unfold(2, patch_size, stride).unfold(3, patch_size, stride)
    # (B, C, Gh, Gw, P, P) -> (B, Gh, Gw, C, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5)
    assert patches.shape[1:3] == (rows, cols)
    return patches
