import pytest
import torch

from cpc.models.patches import extract_patches, grid_size


def test_patches_are_exact_crops():
    images = torch.randn(2, 3, 28, 28)
    patches = extract_patches(images, patch_size=8, stride=4)
    assert patches.shape == (2, 6, 6, 3, 8, 8)
    for i in range(6):
        for j in range(6):
            crop = images[:, :, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8]
            assert torch.equal(patches[:, i, j], crop)


def test_non_square_grid():
    patches = extract_patches(torch.zeros(1, 1, 32, 20), patch_size=8, stride=4)
    assert patches.shape == (1, 7, 4, 1, 8, 8)


def test_image_smaller_than_patch_is_rejected():
    with pytest.raises(ValueError, match="smaller than one patch"):
        grid_size(6, patch_size=8, stride=4)
