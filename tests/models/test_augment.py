import pytest
import torch
from torch import nn

from cpc.models.augment import ImageAugment, PatchAugment, translate
from cpc.models.patches import extract_patches

# "meta" tensors carry no data but fail on ops that mix in a tensor made on another device,
# so they check that every random draw follows the input's device without needing a GPU.
DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])
OFF = dict(hflip=0.0, max_shift=0, brightness=0.0, contrast=0.0, drop_color=0.0)


def slow_translate(x: torch.Tensor, dy: int, dx: int, fill: str, flip: bool = False):
    """Reference for one (C, H, W) item: flip, then out[i, j] = x[i - dy, j - dx], with the
    source of every row and column worked out in plain Python."""
    _, height, width = x.shape
    if flip:
        x = x[:, :, [width - 1 - j for j in range(width)]]
    rows, cols = [i - dy for i in range(height)], [j - dx for j in range(width)]
    out = x[:, [min(max(r, 0), height - 1) for r in rows]]
    out = out[:, :, [min(max(c, 0), width - 1) for c in cols]]
    if fill == "zeros":
        inside = torch.tensor([[0 <= r < height and 0 <= c < width for c in cols] for r in rows])
        out = torch.where(inside, out, 0.0)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(2, 6, 6, 1, 8, 8), (2, 3, 3, 3, 16, 16), (10, 3, 8, 8)])
def test_patch_augment_keeps_shape_dtype_device_range(shape, device):
    patches = torch.rand(shape, device=device)
    out = PatchAugment(brightness=1.0, contrast=1.0, max_shift=2)(patches)
    assert out.shape == patches.shape and out.dtype == patches.dtype
    assert out.device == patches.device
    if device != "meta":
        assert out.min() >= 0 and out.max() <= 1
        assert not torch.equal(out, patches)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
def test_image_augment_keeps_shape_dtype_device_range(channels, device):
    images = torch.rand(4, channels, 28, 20, device=device)
    out = ImageAugment()(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.device == images.device
    if device != "meta":
        assert out.min() >= 0 and out.max() <= 1


def test_augments_have_no_parameters_and_work_on_the_trainers_patch_grid():
    aug = nn.Sequential(ImageAugment())
    patches = PatchAugment()(extract_patches(aug(torch.rand(3, 1, 28, 28)), 8, 4))
    assert patches.shape == (3, 6, 6, 1, 8, 8)
    assert list(PatchAugment().parameters()) == list(ImageAugment().parameters()) == []


@pytest.mark.parametrize("channels", [1, 3])
def test_all_off_is_exact_identity(channels):
    patches = torch.rand(2, 4, 4, channels, 8, 8)
    images = torch.rand(2, channels, 12, 12)
    assert torch.equal(PatchAugment(**OFF)(patches), patches)
    assert torch.equal(ImageAugment(max_shift=0, hflip=0.0)(images), images)


def test_hflip_one_is_exact_flip():
    patches = torch.rand(2, 3, 3, 3, 8, 8)
    images = torch.rand(2, 3, 12, 12)
    assert torch.equal(PatchAugment(**{**OFF, "hflip": 1.0})(patches), patches.flip(-1))
    assert torch.equal(ImageAugment(max_shift=0, hflip=1.0)(images), images.flip(-1))


def test_hflip_is_drawn_per_patch_not_per_image():
    torch.manual_seed(0)
    patches = torch.rand(64, 7, 7, 1, 8, 8)
    out = PatchAugment(**{**OFF, "hflip": 0.5})(patches)
    flipped = (out == patches.flip(-1)).flatten(-3).all(-1)  # (B, G, G)
    kept = (out == patches).flatten(-3).all(-1)
    assert torch.all(flipped ^ kept)  # every patch is exactly one of the two
    assert abs(flipped.float().mean().item() - 0.5) < 0.03  # 3136 draws: std 0.009
    per_image = flipped.flatten(1).float().mean(1)  # (B,)
    assert torch.all((per_image > 0) & (per_image < 1))  # mixed inside every image


@pytest.mark.parametrize("fill", ["replicate", "zeros"])
def test_translate_matches_slow_loop(fill):
    torch.manual_seed(0)
    x = torch.rand(3, 2, 2, 6, 5)  # non-square, two leading dims
    dy = torch.tensor([[-2, 0], [1, 6], [3, -1]])
    dx = torch.tensor([[1, -3], [0, 2], [-5, 4]])
    out = translate(x, dy, dx, fill)
    for a in range(3):
        for b in range(2):
            expected = slow_translate(x[a, b], int(dy[a, b]), int(dx[a, b]), fill)
            assert torch.equal(out[a, b], expected), (a, b)


def test_translate_with_flip_matches_slow_loop():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 5, 6)
    dy, dx = torch.tensor([0, 1, -2, 0]), torch.tensor([0, -1, 2, 3])
    flip = torch.tensor([True, True, False, True])
    for fill in ("replicate", "zeros"):
        out = translate(x, dy, dx, fill, flip)
        for k in range(4):
            expected = slow_translate(x[k], int(dy[k]), int(dx[k]), fill, bool(flip[k]))
            assert torch.equal(out[k], expected), (fill, k)
    assert torch.equal(out[0], x[0].flip(-1))


def test_translate_moves_content_the_documented_way():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1, 1] = 1.0
    out = translate(x, torch.tensor([2]), torch.tensor([1]), "zeros")  # 2 down, 1 right
    assert out[0, 0, 3, 2] == 1 and out.sum() == 1


def test_patch_flip_and_shift_are_drawn_per_patch_from_the_allowed_set():
    torch.manual_seed(1)
    patches = torch.rand(6, 4, 4, 2, 8, 8)
    out = PatchAugment(**{**OFF, "max_shift": 1, "hflip": 0.5})(patches)
    flat_in, flat_out = patches.reshape(-1, 2, 8, 8), out.reshape(-1, 2, 8, 8)
    allowed = [(dy, dx, f) for dy in (-1, 0, 1) for dx in (-1, 0, 1) for f in (False, True)]
    used = []
    for x, y in zip(flat_in, flat_out, strict=True):
        matches = [
            a for a in allowed if torch.equal(y, slow_translate(x, *a[:2], "replicate", a[2]))
        ]
        assert len(matches) == 1  # random content: exactly one (offset, flip) gives the patch
        used.append(matches[0])
    assert set(used) == set(allowed)  # 96 patches cover all 18 combinations


def test_image_translation_uses_zero_fill_and_offsets_up_to_max_shift():
    torch.manual_seed(2)
    images = torch.rand(32, 1, 10, 10) * 0.9 + 0.1  # no zeros in the input
    out = ImageAugment(max_shift=2, hflip=0.0)(images)
    used = set()
    for x, y in zip(images, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y, slow_translate(x, dy, dx, "zeros"))
        ]
        assert len(matches) == 1
        used.add(matches[0])
        dy, dx = matches[0]
        assert (y == 0).sum() == 10 * 10 - (10 - abs(dy)) * (10 - abs(dx))
    assert len(used) > 10  # 25 possible offsets, 32 draws


def test_drop_color_one_gives_channel_mean_on_rgb_and_identity_on_grey():
    rgb = torch.rand(4, 3, 3, 3, 8, 8)
    out = PatchAugment(**{**OFF, "drop_color": 1.0})(rgb)
    expected = rgb.mean(dim=-3, keepdim=True).expand_as(rgb)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    grey = torch.rand(4, 3, 3, 1, 8, 8)
    assert torch.equal(PatchAugment(**{**OFF, "drop_color": 1.0})(grey), grey)


def test_brightness_scales_each_patch_by_its_own_factor_in_range():
    torch.manual_seed(3)
    patches = torch.rand(200, 1, 8, 8) * 0.5 + 0.1  # factor <= 1.4 keeps values under 1
    out = PatchAugment(**{**OFF, "brightness": 0.4})(patches)
    factor = out / patches  # one constant per patch
    per_patch = factor.flatten(1)
    torch.testing.assert_close(per_patch.min(1).values, per_patch.max(1).values)
    assert per_patch.min() >= 0.6 - 1e-6 and per_patch.max() <= 1.4 + 1e-6
    assert per_patch[:, 0].std() > 0.15  # U[0.6, 1.4] has std 0.23: patches differ


def test_contrast_keeps_patch_mean_and_scales_deviation():
    torch.manual_seed(4)
    patches = torch.rand(200, 1, 8, 8) * 0.2 + 0.4  # stays inside [0, 1] for factors <= 1.5
    out = PatchAugment(**{**OFF, "contrast": 0.5})(patches)
    mean_in, mean_out = patches.mean((1, 2, 3)), out.mean((1, 2, 3))
    torch.testing.assert_close(mean_out, mean_in)
    ratio = out.std((1, 2, 3)) / patches.std((1, 2, 3))
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 1.5 + 1e-5
    assert ratio.std() > 0.2


def test_strong_jitter_is_clamped_to_unit_range():
    torch.manual_seed(5)
    patches = torch.rand(500, 3, 8, 8)
    out = PatchAugment(brightness=1.0, contrast=1.0)(patches)
    assert out.min() == 0 and out.max() == 1  # clamping is reached, never exceeded


def test_same_seed_same_output_and_different_seed_differs():
    patches = torch.rand(4, 5, 5, 3, 8, 8)
    images = torch.rand(4, 3, 16, 16)
    aug_p, aug_i = PatchAugment(), ImageAugment()
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append((aug_p(patches), aug_i(images)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    assert not torch.equal(runs[0][1], runs[2][1])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PatchAugment(hflip=1.5), "hflip"),
        (lambda: PatchAugment(drop_color=-0.1), "drop_color"),
        (lambda: PatchAugment(max_shift=-1), "max_shift"),
        (lambda: PatchAugment(brightness=2.0), "brightness"),
        (lambda: PatchAugment(fill="reflect"), "fill"),
        (lambda: ImageAugment(hflip=-1.0), "hflip"),
        (lambda: ImageAugment(fill="wrap"), "fill"),
    ],
)
def test_bad_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="max_shift=8"):
        PatchAugment(max_shift=8)(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ImageAugment()(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match="float"):
        PatchAugment()(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="leading shape"):
        translate(
            torch.rand(2, 1, 4, 4),
            torch.zeros(3, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            "zeros",
        )
    with pytest.raises(ValueError, match="integer"):
        translate(torch.rand(2, 1, 4, 4), torch.zeros(2), torch.zeros(2), "zeros")
    with pytest.raises(ValueError, match="flip has shape"):
        zeros = torch.zeros(2, dtype=torch.long)
        translate(torch.rand(2, 1, 4, 4), zeros, zeros, "zeros", torch.zeros(3, dtype=torch.bool))
