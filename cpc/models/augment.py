"""Batch-wise augmentations on the training device: per patch (CPC v2) and per image.

CPC can be solved from low-level cues instead of content: a line that runs on from one patch
into the next, or the mean brightness shared by neighbouring patches. Hénaff et al. (2019),
"Data-Efficient Image Recognition with Contrastive Predictive Coding", Sec. 4.1 ("patch-based
augmentation"), remove such cues by augmenting every patch independently: the original CPC
already jittered each patch spatially on its own, and CPC v2 adds colour dropping, flips and
further colour and geometric transforms per patch. (Paraphrased, not quoted.)

Everything here is a tensor op over the whole batch on the tensor's own device: no per-sample
Python loop, no PIL. Random draws come from ``torch.rand``/``torch.randint`` on that device,
so ``torch.manual_seed`` / ``lightning.seed_everything`` make them reproducible. The modules
have no parameters and always augment; apply them in training only, and chain them with
``nn.Sequential``.

Example:
    >>> from cpc.models.patches import extract_patches
    >>> images = torch.rand(4, 1, 28, 28)
    >>> patches = extract_patches(ImageAugment()(images), patch_size=8, stride=4)
    >>> PatchAugment()(patches).shape  # (B, Gh, Gw, C, P, P)
    torch.Size([4, 6, 6, 1, 8, 8])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Fill = Literal["replicate", "zeros"]


def translate(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    fill: Fill,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shift (and optionally flip) every image or patch by its own offset, in one gather.

    ``out[..., c, i, j] = src[..., c, i - dy, j - dx]`` where ``src`` is the item, flipped
    left-right first where ``flip`` is True: positive ``dy`` moves the content down, positive
    ``dx`` to the right. Pixels shifted in from outside are the nearest border pixel
    (``fill="replicate"``) or 0 (``fill="zeros"``). Flip and shift are folded into one index,
    so the data is read once whatever is applied.

    Args:
        x: ``(..., C, H, W)``, any number of leading dims.
        dy: integer offsets of shape ``x.shape[:-3]`` (one per image or patch).
        dx: integer offsets of shape ``x.shape[:-3]``.
        fill: "replicate" or "zeros".
        flip: optional bool mask of shape ``x.shape[:-3]``: flip these items horizontally.

    Returns:
        ``(..., C, H, W)``, same dtype and device as ``x``.
    """
    if fill not in ("replicate", "zeros"):
        raise ValueError(f"unknown fill {fill!r}: choose 'replicate' or 'zeros'")
    if dy.is_floating_point() or dx.is_floating_point():
        raise ValueError(f"offsets must be integer tensors, got {dy.dtype} and {dx.dtype}")
    lead, (channels, height, width) = x.shape[:-3], x.shape[-3:]
    for name, t in (("dy", dy), ("dx", dx), ("flip", flip)):
        if t is not None and t.shape != lead:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but must have the leading shape "
                f"{tuple(lead)} of x {tuple(x.shape)}: one value per image or patch"
            )
    flat = x.reshape(-1, channels, height * width)  # (..., C, H, W) -> (N, C, H*W)
    rows = torch.arange(height, device=x.device) - dy.reshape(-1, 1)  # (N, H) source rows
    cols = torch.arange(width, device=x.device) - dx.reshape(-1, 1)  # (N, W) source cols
    # Replicate padding is the gather with source indices clamped into the image.
    src_rows, src_cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    if flip is not None:  # column c of the flipped item is column W-1-c of the item
        src_cols = torch.where(flip.reshape(-1, 1), width - 1 - src_cols, src_cols)
    index = src_rows[:, :, None] * width + src_cols[:, None, :]  # (N, H, W) flat source pixel
    index = index.reshape(-1, 1, height * width).expand_as(flat)  # (N, C, H*W), shared over C
    out = flat.gather(-1, index)
    if fill == "zeros":
        inside_rows = (rows >= 0) & (rows < height)  # (N, H)
        inside_cols = (cols >= 0) & (cols < width)  # (N, W)
        inside = inside_rows[:, :, None] & inside_cols[:, None, :]  # (N, H, W)
        out = out.masked_fill(~inside.reshape(-1, 1, height * width), 0)
    return out.reshape(x.shape)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")


def _check_max_shift(max_shift: int) -> None:
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift}")


def _random_flip_translate(
    x: torch.Tensor, hflip: float, max_shift: int, fill: Fill
) -> torch.Tensor:
    """Flip each item of ``x (N, C, H, W)`` with probability ``hflip`` and shift it by an
    offset drawn uniformly from ``[-max_shift, max_shift]^2``; identity if both are 0."""
    if hflip == 0 and max_shift == 0:
        return x
    if max_shift >= min(x.shape[-2:]):
        raise ValueError(
            f"max_shift={max_shift} would move content fully out of a {tuple(x.shape[-2:])} "
            "input: use a max_shift smaller than its side"
        )
    n = x.shape[0]
    flip = torch.rand(n, device=x.device) < hflip if hflip > 0 else None  # (N,)
    if max_shift > 0:
        dy, dx = torch.randint(-max_shift, max_shift + 1, (2, n), device=x.device)  # (N,) each
    else:
        dy = dx = torch.zeros(n, dtype=torch.long, device=x.device)
    return translate(x, dy, dx, fill, flip)


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    """``(n, 1, 1, 1)`` factors drawn from U[low, high] in ``like``'s dtype and device."""
    u = torch.rand(n, 1, 1, 1, dtype=like.dtype, device=like.device)
    return low + (high - low) * u


def _brightness_contrast(x: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """``clamp(b * (c * (x - mean) + mean), 0, 1)`` per item of ``x (N, C, H, W)``, with
    ``b ~ U[1-brightness, 1+brightness]``, ``c ~ U[1-contrast, 1+contrast]`` and ``mean`` the
    item's mean: one affine map and one clamp, as two passes over the data."""
    n = x.shape[0]
    if brightness > 0:
        scale = _uniform(n, 1 - brightness, 1 + brightness, x)  # (N, 1, 1, 1)
    else:
        scale = torch.ones(n, 1, 1, 1, dtype=x.dtype, device=x.device)
    bias = torch.zeros((), dtype=x.dtype, device=x.device)
    if contrast > 0:
        c = _uniform(n, 1 - contrast, 1 + contrast, x)  # (N, 1, 1, 1)
        bias = scale * (1 - c) * x.mean(dim=(1, 2, 3), keepdim=True)
        scale = scale * c
    return torch.addcmul(bias, x, scale).clamp_(0, 1)


class PatchAugment(nn.Module):
    """Augment every patch independently, as CPC v2 does (Hénaff et al., 2019, Sec. 4.1).

    Applied in this order, each with its own random draw per patch: colour dropping;
    brightness and contrast, as one affine map ``b * (c * (x - mean) + mean)`` clamped to
    [0, 1]; horizontal flip and spatial jitter, as one gather (:func:`translate`). A
    magnitude or probability of 0 switches that step off (and draws no random numbers), so
    all-zero arguments give the exact identity. The whole forward costs a few copies of the
    batch, small next to the encoder's step on the same patches.

    The defaults suit 8x8 grayscale patches cut with stride 4 from 28x28 Fashion-MNIST/MNIST.

    Args:
        hflip: probability of flipping a patch left-right. 0.5, the usual choice: flips keep
            the class of natural images and of Fashion-MNIST garments and shoes.
        max_shift: spatial jitter; each patch's content moves by an integer offset drawn
            uniformly from ``[-max_shift, max_shift]^2``. 1 pixel of 8: with neighbours
            jittered independently, two overlapping patches are misaligned by up to 2 pixels,
            so an edge no longer runs on exactly from one patch into the next (the per-patch
            spatial jitter of the original CPC, as Hénaff et al. 2019 describe it), while
            losing at most one row and one column of an 8-pixel patch.
        brightness: multiply a patch by a factor drawn from ``[1 - b, 1 + b]``, as
            torchvision's ``ColorJitter``. 0.4 as in the ColorJitter of MoCo v2 and BYOL; on
            grayscale data brightness and contrast are the only photometric cues neighbouring
            patches share, so jittering them per patch takes that shortcut away.
        contrast: scale a patch's deviation from its own mean by a factor drawn from
            ``[1 - c, 1 + c]``. 0.4 for the same reason as brightness.
        drop_color: probability of replacing an RGB patch by its grey version, the mean of
            its channels repeated in every channel. 0.25, close to SimCLR's 0.2 random
            grayscale. This is the channel-mean form of CPC v2's colour dropping (which keeps
            one random channel of three, after Doersch et al. 2015); a no-op for 1 channel.
        fill: pixels shifted in from outside a patch take the nearest border pixel
            ("replicate", default: a zero border would be an artificial edge inside the
            image that tells the encoder which way the patch moved) or 0 ("zeros").

    Shape:
        Input and output ``(..., C, P, P)`` with any leading dims, e.g. ``(B, Gh, Gw)`` from
        :func:`cpc.models.patches.extract_patches` or ``(N,)``; float in [0, 1].
    """

    def __init__(
        self,
        hflip: float = 0.5,
        max_shift: int = 1,
        brightness: float = 0.4,
        contrast: float = 0.4,
        drop_color: float = 0.25,
        fill: Fill = "replicate",
    ) -> None:
        super().__init__()
        _check_probability("hflip", hflip)
        _check_probability("drop_color", drop_color)
        _check_max_shift(max_shift)
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (factors in [1-v, 1+v]), got {value}")
        if fill not in ("replicate", "zeros"):
            raise ValueError(f"unknown fill {fill!r}: choose 'replicate' or 'zeros'")
        self.hflip, self.max_shift, self.fill = hflip, max_shift, fill
        self.brightness, self.contrast, self.drop_color = brightness, contrast, drop_color

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.ndim < 3 or not patches.is_floating_point():
            raise ValueError(
                f"expected float patches of shape (..., C, P, P), got {patches.dtype} "
                f"{tuple(patches.shape)}"
            )
        x = patches.reshape(-1, *patches.shape[-3:])  # (..., C, P, P) -> (N, C, P, P)
        n = x.shape[0]
        if self.drop_color > 0 and x.shape[1] > 1:
            drop = torch.rand(n, device=x.device) < self.drop_color  # (N,)
            grey = x.mean(dim=1, keepdim=True).expand_as(x)  # (N, 1, P, P) -> (N, C, P, P)
            x = torch.where(drop[:, None, None, None], grey, x)
        if self.brightness > 0 or self.contrast > 0:
            x = _brightness_contrast(x, self.brightness, self.contrast)
        x = _random_flip_translate(x, self.hflip, self.max_shift, self.fill)
        return x.reshape(patches.shape)

    def extra_repr(self) -> str:
        return (
            f"hflip={self.hflip}, max_shift={self.max_shift}, brightness={self.brightness}, "
            f"contrast={self.contrast}, drop_color={self.drop_color}, fill={self.fill!r}"
        )


class ImageAugment(nn.Module):
    """Random translation and horizontal flip of whole images, one draw per image.

    Args:
        max_shift: each image moves by an integer offset drawn uniformly from
            ``[-max_shift, max_shift]^2``. 2 pixels, the usual padding-and-crop
            augmentation for 28x28 MNIST-like images (CIFAR's usual choice is 4 of 32).
        hflip: probability of flipping an image left-right; 0.5.
        fill: pixels shifted in from outside: 0 ("zeros", default: Fashion-MNIST and MNIST
            backgrounds are black) or the nearest border pixel ("replicate").

    Shape:
        Input and output ``(B, C, H, W)``, float in [0, 1].
    """

    def __init__(self, max_shift: int = 2, hflip: float = 0.5, fill: Fill = "zeros") -> None:
        super().__init__()
        _check_max_shift(max_shift)
        _check_probability("hflip", hflip)
        if fill not in ("replicate", "zeros"):
            raise ValueError(f"unknown fill {fill!r}: choose 'replicate' or 'zeros'")
        self.max_shift, self.hflip, self.fill = max_shift, hflip, fill

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"expected float images of shape (B, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        return _random_flip_translate(images, self.hflip, self.max_shift, self.fill)

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, hflip={self.hflip}, fill={self.fill!r}"
