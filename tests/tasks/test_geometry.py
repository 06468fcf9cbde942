import pytest
import torch
import torch.nn.functional as F

from cpc.models.encoder import ResNetEncoder
from cpc.tasks import PatchPositionTask
from cpc.tasks.geometry import check_no_wrap_overlap, wrapped_patch_grid
from cpc.tasks.patch_position import DIRECTIONS

P, STRIDE = 8, 4  # ResNetEncoder's patches


def tagged(h: int, w: int) -> torch.Tensor:
    """A ``(1, 1, H, W)`` image whose pixels hold their own index ``row * W + col``."""
    return torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)


def test_stride_dividing_the_side_leaves_the_image_uncropped():
    """28 % 4 == 0: the grid is the old one (no crop), the configs train exactly as before."""
    encoder = ResNetEncoder(width=4)
    images = torch.rand(2, 1, 28, 28)
    grid = wrapped_patch_grid(encoder, images)  # (2, 7, 7, 1, P, P)
    assert grid.shape == (2, 7, 7, 1, P, P)
    uncropped = encoder.patchify(F.pad(images, (0, 4, 0, 4), mode="circular"))
    assert grid.equal(uncropped)
    rows = [(6 * STRIDE + i) % 28 for i in range(P)]  # the last patch runs on into row 0
    assert grid[:, 6, 6].equal(images[:, :, rows][:, :, :, rows])


def test_sides_not_a_multiple_of_the_stride_are_centre_cropped():
    encoder = ResNetEncoder(width=4)
    grid = wrapped_patch_grid(encoder, tagged(30, 31))  # cropped to 28x28 from (1, 1)
    assert grid.shape == (1, 7, 7, 1, P, P)
    assert grid[0, 0, 0, 0, 0, 0] == 1 * 31 + 1
    bottom_right = grid[0, 6, 6, 0]  # runs from pixel (25, 25) on into the crop's top left
    assert bottom_right[0, 0] == 25 * 31 + 25 and bottom_right[-1, -1] == 4 * 31 + 4


@pytest.mark.parametrize("side", [28, 30, 33])
def test_patches_at_the_default_gap_share_no_pixel_anywhere_on_the_torus(side):
    """Every centre and every direction, across the wrap included: at 30 uncropped, the pair
    across the seam (rows 7 and 1 of an 8x8 grid) shared 16 pixels."""
    gap = PatchPositionTask(8).gap
    grid = wrapped_patch_grid(ResNetEncoder(width=4), tagged(side, side))[0]  # (G, G, 1, P, P)
    g = grid.shape[0]
    pixels = [[set(grid[r, c].flatten().tolist()) for c in range(g)] for r in range(g)]
    for r in range(g):
        for c in range(g):
            for dr, dc in DIRECTIONS:
                neighbour = pixels[(r + gap * dr) % g][(c + gap * dc) % g]
                assert not pixels[r][c] & neighbour, (side, r, c, dr, dc)


def test_image_smaller_than_one_patch_once_cropped_is_one_clear_error():
    with pytest.raises(ValueError, match=r"images of 7x30 .* smaller than one patch \(8\)"):
        wrapped_patch_grid(ResNetEncoder(width=4), torch.rand(1, 1, 7, 30))


@pytest.mark.parametrize(("grid", "steps", "fits"), [(7, 2, True), (7, 3, False), (8, 3, True)])
def test_wrap_check_needs_two_spacings_and_a_patch(grid, steps, fits):
    encoder = ResNetEncoder(width=4)
    if fits:
        check_no_wrap_overlap(encoder, grid, grid, steps)
    else:
        with pytest.raises(ValueError, match=r"spacing=3 .* 4 pixels .* at least 32x32"):
            check_no_wrap_overlap(encoder, grid, grid, steps)
