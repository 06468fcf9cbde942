"""Jigsaw puzzles: shuffle a 3x3 arrangement of patches, then say which shuffle it was.

Noroozi and Favaro, 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles". Nine tiles are taken from the image in a 3x3 arrangement, put in the order of one
permutation from a fixed set, encoded one by one by the shared encoder (their "context free
network") and classified by the index of the permutation. Telling the order needs to know
what the parts of an object look like and where they go.

images (B, C, H, W) -> patch grid (B, Gh, Gw, C, P, P) -> 3x3 tiles ``spacing`` steps apart
at a random offset (B, 9, C, P, P) -> shuffled by permutation y_i (B, 9, C, P, P) ->
PatchAugment per tile (training only) -> encoder (B*9 tiles) -> concat (B, 9D) -> head
-> ``num_permutations`` logits -> cross entropy against y.

The permutation set is chosen greedily for large Hamming distances (the number of positions
at which two permutations differ), so no two classes are nearly the same shuffle; it is a
registered buffer, saved in every checkpoint and restored from it (a later change to the
selection code cannot silently relabel a trained head). Shortcuts guarded, as in the
paper's Sec. 3.3 (gaps between tiles, random tile positions, per-tile normalisation, colour):
tiles ``spacing`` steps apart share no pixels, neither side by side nor across the wrap
(checked against the encoder's stride); each tile is jittered, flipped and given its own
brightness and contrast by ``PatchAugment``; RGB tiles lose their colour on their own with
probability 0.5. With CPC's stride of half a patch the default ``spacing=2`` makes tiles
touch (the paper leaves gaps): the jitter is what breaks lines running across tile borders.
``spacing=3`` would leave gaps, but on the 7x7 wrapped grid of 28x28 images the third tile
of a row comes back round to 1 step from the first and overlaps it; it needs an 8x8 grid
(32x32 images). A tile's place in the frame would tell its slot (on the 6x6 grid that 28x28
images give unwrapped, the 3x3 arrangement has only 2x2 positions), so the tiles are cut
from the image wrapped onto a torus at an offset uniform over the whole grid
(:func:`cpc.tasks.geometry.wrapped_patch_grid`): every frame position is then equally often
every slot.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cpc.models.augment import PatchAugment
from cpc.models.heads import mlp_head
from cpc.tasks.base import GridEncoder, Task
from cpc.tasks.geometry import (
    check_grid,
    check_no_overlap,
    check_no_wrap_overlap,
    wrapped_patch_grid,
)

NUM_TILES = 9  # a 3x3 puzzle


def all_permutations(n: int) -> np.ndarray:
    """Every permutation of ``range(n)``, ``(n!, n)`` uint8, built by inserting ``m`` into
    every position of the permutations of ``range(m)`` (array copies, no per-row Python)."""
    if not 1 <= n <= 10:
        raise ValueError(f"n must be in [1, 10] (n! rows), got {n}")
    perms = np.zeros((1, 0), dtype=np.uint8)  # (0!, 0)
    for m in range(n):
        k = perms.shape[0]
        out = np.empty((k * (m + 1), m + 1), dtype=np.uint8)  # ((m+1)!, m+1)
        for pos in range(m + 1):
            block = out[pos * k : (pos + 1) * k]  # (m!, m+1): m inserted at `pos`
            block[:, :pos], block[:, pos], block[:, pos + 1 :] = perms[:, :pos], m, perms[:, pos:]
        perms = out
    return perms


def hamming_permutations(num_permutations: int, num_tiles: int = 9, seed: int = 0) -> torch.Tensor:
    """A set of permutations with large pairwise Hamming distances, chosen greedily.

    Starts from a random permutation, then repeatedly adds the permutation of ``range(n)``
    whose smallest Hamming distance to those chosen so far is largest (max-min). Ties go to
    the first in a seeded random order of all ``n!`` permutations, so the set depends only on
    the arguments. The paper's Algorithm 1 maximises the *sum* of distances instead, which
    can pick a permutation next to one already chosen if it is far from the others; max-min
    guarantees a margin between every two classes. With the defaults (100 of 9 tiles, seed 0)
    every two permutations differ in at least 6 of 9 positions, in 8.06 on average (1000:
    at least 5, 8.01 on average), where two random permutations of 9 differ in 8.

    Runs in NumPy (single-threaded, unaffected by torch's thread pool on a busy machine).

    Returns:
        ``(num_permutations, num_tiles)`` long; row ``j`` puts tile ``perm[j][i]`` at
        position ``i``.
    """
    candidates = all_permutations(num_tiles)  # (n!, n)
    if not 1 <= num_permutations <= candidates.shape[0]:
        raise ValueError(
            f"num_permutations must be in [1, {candidates.shape[0]}] for {num_tiles} tiles, "
            f"got {num_permutations}"
        )
    order = np.random.default_rng(seed).permutation(candidates.shape[0])
    columns = np.ascontiguousarray(candidates[order].T)  # (n, n!): one fast compare per position
    chosen = [columns[:, 0].copy()]  # the first in the seeded order: a random start
    nearest = _distances(columns, chosen[0])  # (n!,) distance to the closest chosen one
    for _ in range(num_permutations - 1):
        best = int(nearest.argmax())  # first maximum: the seeded order breaks ties
        chosen.append(columns[:, best].copy())
        np.minimum(nearest, _distances(columns, chosen[-1]), out=nearest)
    return torch.from_numpy(np.stack(chosen)).long()


def _distances(columns: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Hamming distances ``(M,)`` uint8 from ``perm (n,)`` to the permutations ``(n, M)``."""
    out = (columns[0] != perm[0]).astype(np.uint8)  # (M,)
    for i in range(1, len(perm)):
        out += columns[i] != perm[i]
    return out


class JigsawTask(Task):
    """Jigsaw puzzle (Noroozi & Favaro, 2016): classify which permutation shuffled 3x3 tiles.

    The tiles' top-left corner is drawn per image uniformly over the wrapped grid (tiles run
    on modulo the grid size); the permutation is uniform over the set.
    In evaluation both come from a generator seeded with 0 on every call and the tiles are
    not augmented, so ``val/jigsaw/acc`` is comparable between epochs.

    Args:
        num_features: latent size D of the encoder (given by the module).
        num_permutations: classes; the paper's best transfer used 1000, its ablation found
            more permutations and larger distances help. 100 suits a small encoder and a
            small head.
        seed: seed of the permutation set (see :func:`hamming_permutations`); the set is
            saved in checkpoints, so a loaded model keeps the set it was trained with.
        hidden: width of the head's hidden layer (Linear(9D, hidden) -> ReLU -> Linear to
            ``num_permutations``); 0 for a linear head.
        spacing: grid steps between neighbouring tiles; the default 2 with CPC's stride of
            half a patch makes tiles touch without sharing pixels; 1 is refused when the
            module is built, and a spacing whose tiles meet across the wrap (3 on 28x28
            images) on the first batch.
        augment: applied to the tiles ``(B, 9, C, P, P)`` in training; default
            ``PatchAugment(max_shift=2, drop_color=0.5)``; ``nn.Identity()`` disables.
        weight: factor of this loss in the total.
    """

    name = "jigsaw"

    def __init__(
        self,
        num_features: int,
        num_permutations: int = 100,
        seed: int = 0,
        hidden: int = 256,
        spacing: int = 2,
        augment: nn.Module | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if spacing < 1 or hidden < 0:
            raise ValueError(f"need spacing >= 1 and hidden >= 0, got {spacing} and {hidden}")
        self.spacing = spacing
        self.register_buffer(
            "permutations", hamming_permutations(num_permutations, NUM_TILES, seed)
        )
        self.augment = augment if augment is not None else PatchAugment(max_shift=2, drop_color=0.5)
        self.head = mlp_head(NUM_TILES * num_features, num_permutations, hidden)

    def check_encoder(self, encoder: GridEncoder) -> None:
        """Refuse a ``spacing`` that makes neighbouring tiles share pixels (the wrap, which
        depends on the image size, is checked on each batch)."""
        check_no_overlap(encoder, self.spacing, "JigsawTask spacing")

    def make_puzzles(
        self, encoder: GridEncoder, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images ``(B, C, H, W)`` -> shuffled tiles ``(B, 9, C, P, P)`` (augmented in
        training), permutation labels ``(B,)`` and the tiles' grid offsets ``(B, 2)``."""
        patches = wrapped_patch_grid(encoder, images)  # (B, Gh, Gw, C, P, P)
        b, gh, gw = patches.shape[:3]
        check_grid(gh, gw, self.spacing, "JigsawTask spacing")
        check_no_overlap(encoder, self.spacing, "JigsawTask spacing")
        check_no_wrap_overlap(encoder, gh, gw, self.spacing, "JigsawTask spacing")
        device = images.device
        generator = None if self.training else torch.Generator(device=device).manual_seed(0)
        offsets = torch.stack(
            [
                torch.randint(gh, (b,), device=device, generator=generator),
                torch.randint(gw, (b,), device=device, generator=generator),
            ],
            dim=1,
        )  # (B, 2) top-left tile in grid steps
        labels = torch.randint(
            len(self.permutations), (b,), device=device, generator=generator
        )  # (B,)
        order = self.permutations[labels]  # (B, 9): position i shows tile order[i]
        rows = (offsets[:, :1] + self.spacing * torch.div(order, 3, rounding_mode="floor")) % gh
        cols = (offsets[:, 1:] + self.spacing * (order % 3)) % gw  # (B, 9) grid column of each
        tiles = patches[torch.arange(b, device=device)[:, None], rows, cols]  # (B, 9, C, P, P)
        if self.training:
            tiles = self.augment(tiles)
        return tiles, labels, offsets

    def forward(self, encoder: GridEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        tiles, labels, _ = self.make_puzzles(encoder, images)
        b = tiles.shape[0]
        z = encoder.encode_grid(tiles.view(b, 3, 3, *tiles.shape[2:]))  # (B, D, 3, 3)
        # (B, D, 3, 3) -> (B, 3, 3, D) -> (B, 9D): tile features in shuffled order
        z = z.permute(0, 2, 3, 1).reshape(b, -1)
        logits = self.head(z)  # (B, num_permutations)
        return {
            "loss": F.cross_entropy(logits, labels),
            "acc": (logits.argmax(dim=1) == labels).float().mean(),
        }
