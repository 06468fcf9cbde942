"""Relative patch position: given a centre patch and a neighbour, say where the neighbour lies.

Doersch, Gupta and Efros, 2015, "Unsupervised Visual Representation Learning by Context
Prediction". A patch is taken from the image together with one of its 8 neighbours in a 3x3
arrangement; both are encoded by the same network and a head on the pair classifies the
neighbour's position (top-left, top, ..., bottom-right). Solving it needs to know what object
parts look like and how they are laid out.

images (B, C, H, W) -> patch grid (B, Gh, Gw, C, P, P) -> per image K pairs (centre at
(r, c), neighbour at (r + gap*dr, c + gap*dc)) gathered with index tensors -> PatchAugment
per patch (training only) -> encoder (B*K*2 patches) -> concat (B*K, 2D) -> head -> 8 logits.

Shortcuts guarded (the paper's Sec. 3.1 names boundary patterns, textures continuing between
patches and chromatic aberration):

- Edges: the two patches share no pixel (``gap * stride >= patch size``, checked when the
  module is built) and each is jittered on its own (``max_shift``), so a line crossing the
  border does not continue in the same row or column. ``gap=3`` leaves free pixels between
  them, as the paper does.
- Colour: each RGB patch is turned grey on its own with probability ``drop_color``, and
  brightness and contrast are jittered per patch (PatchAugment).
- Absolute position: the image is wrapped onto a torus
  (:func:`cpc.tasks.geometry.wrapped_patch_grid`) and the centre drawn uniformly over all of
  it, so every frame position is equally often each of the 8 labels (a classifier given only
  positions stays at chance: tested).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cpc.models.augment import PatchAugment
from cpc.models.heads import mlp_head
from cpc.tasks.base import GridEncoder, Task
from cpc.tasks.geometry import check_grid, check_no_overlap, wrapped_patch_grid

#: (row, column) direction of label l, row-major around the centre, the paper's order:
#: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.
DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class Pairs(NamedTuple):
    """Examples of the task, ``K`` per image.

    Attributes:
        patches: ``(B, K, 2, C, P, P)``: centre patch first, then its neighbour.
        centres: ``(B, K, 2)`` grid (row, column) of the centre patch.
        labels: ``(B, K)`` index into :data:`DIRECTIONS` of the neighbour.
    """

    patches: torch.Tensor
    centres: torch.Tensor
    labels: torch.Tensor


def sample_pairs(
    patches: torch.Tensor, gap: int, pairs_per_image: int, generator: torch.Generator | None
) -> Pairs:
    """Pick ``K`` random (centre, neighbour) pairs per image from a wrapped grid, batch-wise.

    The centre is uniform over the whole grid, the direction uniform over the 8, and the
    neighbour lies ``gap`` steps away modulo the grid size (see :func:`wrapped_patch_grid`);
    both patches are taken with one advanced index.

    Args:
        patches: ``(B, Gh, Gw, C, P, P)`` from :func:`wrapped_patch_grid`.
        gap: grid steps between the centre and its neighbour.
        pairs_per_image: K.
        generator: random generator on the patches' device (None: the global one).
    """
    b, gh, gw = patches.shape[:3]
    check_grid(gh, gw, gap)
    device, size = patches.device, (b, pairs_per_image)
    rows = torch.randint(gh, size, device=device, generator=generator)  # (B, K)
    cols = torch.randint(gw, size, device=device, generator=generator)  # (B, K)
    labels = torch.randint(len(DIRECTIONS), size, device=device, generator=generator)  # (B, K)
    step = gap * torch.tensor(DIRECTIONS, device=device)[labels]  # (B, K, 2)
    # (B, K) -> (B, K, 2): centre then neighbour, as grid indices on the torus
    pick_rows = torch.stack([rows, (rows + step[..., 0]) % gh], dim=2)
    pick_cols = torch.stack([cols, (cols + step[..., 1]) % gw], dim=2)
    image = torch.arange(b, device=device).view(b, 1, 1)  # (B, 1, 1) broadcasts to (B, K, 2)
    pair_patches = patches[image, pick_rows, pick_cols]  # (B, K, 2, C, P, P)
    return Pairs(pair_patches, torch.stack([rows, cols], dim=2), labels)


class PatchPositionTask(Task):
    """Context prediction (Doersch et al., 2015): classify the 8-way position of a neighbour.

    See the module docstring for the shortcuts guarded. In evaluation the pairs are drawn
    from a generator seeded with 0 on every call and the patches are not augmented, so
    ``val/patch_position/acc`` is comparable between epochs.

    Args:
        num_features: latent size D of the encoder (given by the module).
        hidden: width of the head's hidden layer (Linear(2D, hidden) -> ReLU -> Linear to 8
            logits); 0 for a linear head. The paper's fc7/fc8 sit on the concatenated pair.
        gap: grid steps between centre and neighbour. The default 2 with CPC's stride of half
            a patch makes the two patches touch without sharing pixels; ``gap=1`` would let
            them share half their pixels, a trivial shortcut, and is refused when the module
            is built.
        pairs_per_image: pairs drawn from each image per step (independently, so two may
            repeat). The paper takes one; 4 gives 4x the examples per step for 8 patch
            encodings per image, under a quarter of CPC's 36 on a 6x6 grid (chosen in a short
            run, ``docs/results.md#ablations-what-each-choice-buys``).
        augment: applied to the pair patches ``(B, K, 2, C, P, P)`` in training; default
            ``PatchAugment(max_shift=2, drop_color=0.5)`` (see the module docstring);
            ``nn.Identity()`` disables (and lets the edge shortcut back in).
        weight: factor of this loss in the total.

    Example:
        >>> from cpc.models.encoder import ResNetEncoder
        >>> encoder = ResNetEncoder(width=8)
        >>> task = PatchPositionTask(encoder.num_features)
        >>> sorted(task(encoder, torch.rand(4, 1, 28, 28)))
        ['acc', 'loss']
    """

    name = "patch_position"

    def __init__(
        self,
        num_features: int,
        hidden: int = 256,
        gap: int = 2,
        pairs_per_image: int = 4,
        augment: nn.Module | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if gap < 1 or pairs_per_image < 1 or hidden < 0:
            raise ValueError(
                f"need gap >= 1, pairs_per_image >= 1 and hidden >= 0, got gap={gap}, "
                f"pairs_per_image={pairs_per_image}, hidden={hidden}"
            )
        self.gap, self.pairs_per_image = gap, pairs_per_image
        self.augment = augment if augment is not None else PatchAugment(max_shift=2, drop_color=0.5)
        self.head = mlp_head(2 * num_features, len(DIRECTIONS), hidden)

    def check_encoder(self, encoder: GridEncoder) -> None:
        """Refuse a ``gap`` that makes the two patches share pixels (the grid's size, which
        depends on the images, is checked on each batch)."""
        check_no_overlap(encoder, self.gap)

    def make_pairs(self, encoder: GridEncoder, images: torch.Tensor) -> Pairs:
        """Images ``(B, C, H, W)`` -> :class:`Pairs` (augmented in training)."""
        patches = wrapped_patch_grid(encoder, images)  # (B, Gh, Gw, C, P, P)
        # across the wrap a pair is G - gap steps apart, more than gap once check_grid (in
        # sample_pairs) holds, so the check below covers both ways round the torus
        check_no_overlap(encoder, self.gap)
        generator = None
        if not self.training:
            generator = torch.Generator(device=images.device).manual_seed(0)
        pairs = sample_pairs(patches, self.gap, self.pairs_per_image, generator)
        if self.training:
            pairs = pairs._replace(patches=self.augment(pairs.patches))
        return pairs

    def forward(self, encoder: GridEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pairs = self.make_pairs(encoder, images)
        b, k = pairs.labels.shape
        # (B, K, 2, C, P, P) -> (B*K, 1, 2, C, P, P): each pair as a 1x2 grid for encode_grid
        grid = pairs.patches.reshape(b * k, 1, 2, *pairs.patches.shape[3:])
        z = encoder.encode_grid(grid)  # (B*K, D, 1, 2)
        z = z.squeeze(2).transpose(1, 2).reshape(b * k, -1)  # (B*K, 2D): [centre | neighbour]
        logits = self.head(z)  # (B*K, 8)
        labels = pairs.labels.reshape(-1)  # (B, K) -> (B*K,)
        return {
            "loss": F.cross_entropy(logits, labels),
            "acc": (logits.argmax(dim=1) == labels).float().mean(),
        }
