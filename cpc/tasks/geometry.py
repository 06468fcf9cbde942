"""The wrapped patch grid of the patch tasks, and the checks that its patches share no pixel.

Patch position and jigsaw take patches a few grid steps apart from an image wrapped onto a
torus, so that a patch's place in the frame tells nothing (see their module docstrings).
The image is first centre-cropped to a whole number of strides per side, ``G * stride``
pixels: the torus then repeats every ``G`` grid steps exactly, and every grid position is
equivalent, across the wrap included. Two patches ``n`` steps apart along a side of ``G``
are ``min(n, G - n) * stride`` pixels apart on the torus; they share no pixel when that is
at least the patch size ``P`` on some axis.

images (B, C, H, W) -> crop (B, C, Gh*stride, Gw*stride) -> circular pad by P - stride
-> patch grid (B, Gh, Gw, C, P, P).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cpc.tasks.base import GridEncoder


def patch_geometry(encoder: GridEncoder) -> tuple[int, int]:
    """The encoder's ``(patch_size, patch_stride)``; ``TypeError`` if it lacks either."""
    size, stride = getattr(encoder, "patch_size", None), getattr(encoder, "patch_stride", None)
    if size is None or stride is None:
        raise TypeError(f"{type(encoder).__name__} needs patch_size and patch_stride attributes")
    return size, stride


def wrapped_patch_grid(encoder: GridEncoder, images: torch.Tensor) -> torch.Tensor:
    """Patch grid of the images wrapped onto a torus: ``(B, C, H, W)`` -> ``(B, Gh, Gw, C, P, P)``.

    The images are centre-cropped to ``(Gh * stride, Gw * stride)`` with ``Gh = H // stride``
    (``Gw`` likewise; a no-op when ``stride`` divides the sides, as 4 does 28), so the torus
    repeats every ``G`` steps and no two grid positions are closer than elsewhere across the
    wrap. Patch ``(r, c)`` starts at pixel ``(r * stride, c * stride)`` of the crop and runs
    on past its bottom and right borders into the top and left ones (circular padding):
    indices taken modulo ``G`` never fall off the grid. Needs the encoder's ``patch_size``
    and ``patch_stride``.
    """
    size, stride = patch_geometry(encoder)
    h, w = images.shape[-2:]
    gh, gw = h // stride, w // stride
    if gh * stride < size or gw * stride < size:
        raise ValueError(
            f"images of {h}x{w} cropped to a multiple of patch_stride={stride} are smaller "
            f"than one patch ({size}): use larger images"
        )
    top, left = (h - gh * stride) // 2, (w - gw * stride) // 2
    cropped = images[..., top : top + gh * stride, left : left + gw * stride]  # (B, C, Gh*s, Gw*s)
    pad = max(size - stride, 0)  # the last patch's overhang, taken from the opposite border
    wrapped = F.pad(cropped, (0, pad, 0, pad), mode="circular")  # (B, C, Gh*s + pad, Gw*s + pad)
    return encoder.patchify(wrapped)


def check_grid(rows: int, cols: int, steps: int, arg: str = "PatchPositionTask gap") -> None:
    """Raise unless a 3x3 arrangement of patches ``steps`` grid steps apart fits the grid.

    ``arg`` names the setting as "<Task> <argument>", for the message.
    """
    need = 2 * steps + 1
    if rows < need or cols < need:
        raise ValueError(
            f"the patch grid is {rows}x{cols} but {arg}={steps} needs at least {need}x{need} "
            f"(3x3 patches {steps} steps apart): lower {arg.split()[-1]}, or the encoder's "
            "patch_stride, or use larger images"
        )


def check_no_overlap(encoder: GridEncoder, steps: int, arg: str = "PatchPositionTask gap") -> None:
    """Raise if patches ``steps`` grid steps apart share pixels: ``steps * stride < P``.

    Needs only the encoder, so tasks call it at construction (``Task.check_encoder``).
    Encoders without ``patch_size`` and ``patch_stride`` are trusted. ``arg`` names the
    setting as "<Task> <argument>", for the message.
    """
    size, stride = getattr(encoder, "patch_size", None), getattr(encoder, "patch_stride", None)
    if size is not None and stride is not None and steps * stride < size:
        raise ValueError(
            f"{arg}={steps} with patch_stride={stride} puts patches {steps * stride} pixels "
            f"apart, so {size}-pixel patches overlap (a trivial shortcut): use "
            f"{arg.split()[-1]} >= {-(-size // stride)}"
        )


def check_no_wrap_overlap(
    encoder: GridEncoder, rows: int, cols: int, steps: int, arg: str = "JigsawTask spacing"
) -> None:
    """Raise if a 3x3 arrangement of patches ``steps`` steps apart overlaps itself across the
    wrap of a ``rows x cols`` wrapped grid.

    The third patch of a row, ``2 * steps`` along, is ``G - 2 * steps`` steps short of the
    first again, so it needs ``(G - 2 * steps) * stride >= P`` (with 28x28 images, stride 4
    and P 8: ``G = 7``, and ``steps=3`` leaves 1 step, 4 pixels). Needs the encoder's
    ``patch_size`` and ``patch_stride``. ``arg`` names the setting as "<Task> <argument>".
    """
    size, stride = patch_geometry(encoder)
    left = min(rows, cols) - 2 * steps  # grid steps from the third patch round to the first
    if left * stride < size:
        side = (2 * steps + -(-size // stride)) * stride
        raise ValueError(
            f"{arg}={steps} on a {rows}x{cols} wrapped patch grid brings the third patch of a "
            f"row round to {left * stride} pixels from the first, so {size}-pixel patches "
            f"overlap (a copy shortcut): lower {arg.split()[-1]}, or use images of at least "
            f"{side}x{side}"
        )
