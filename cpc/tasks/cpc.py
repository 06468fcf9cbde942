"""CPC on the patch grid: predict the latents k rows ahead from a causal context (InfoNCE).

van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding";
Hénaff et al. 2019, "Data-Efficient Image Recognition with CPC" (CPC v2: patch augmentation,
LayerNorm instead of BatchNorm, several prediction directions).

images -> patches (augmented per patch) -> encoder -> latents (B, D, G, G)
-> per direction: causal context (B, D, G, G) -> one linear head per step k
-> InfoNCE of prediction (r, c) against target (r + k, c), negatives = every other
position of every image in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cpc.losses.info_nce import info_nce, mi_lower_bound
from cpc.models.augment import PatchAugment
from cpc.models.context import MaskedConvContext
from cpc.tasks.base import GridEncoder, Task

Direction = Literal["down", "up", "right", "left"]


def orient(grid: torch.Tensor, direction: Direction) -> torch.Tensor:
    """Turn ``(B, D, Gh, Gw)`` so that ``direction`` becomes "down": rows predict later rows.

    "down": top rows predict lower ones (CPC v2's default); "up": bottom-up; "right": left
    columns predict columns to their right; "left": the reverse.
    """
    if direction == "down":
        return grid
    if direction == "up":
        return grid.flip(2)
    if direction == "right":
        return grid.transpose(2, 3)  # (B, D, Gw, Gh): columns become rows
    if direction == "left":
        return grid.transpose(2, 3).flip(2)
    raise ValueError(f"unknown direction {direction!r}: choose from down, up, right, left")


class CPCTask(Task):
    """Contrastive Predictive Coding over the rows of the latent grid.

    Args:
        num_features: latent size D of the encoder (given by the module).
        steps: offsets k to predict. With patches overlapping by half (stride = P/2), row
            r + 1 shares pixels with row r, so the default starts at k = 2 (as CPC v2 does).
        directions: prediction directions, each with its own context network and heads.
            CPC v2 found that adding "up" (and "left"/"right") helps.
        context: builds a row-causal context network from D: ``MaskedConvContext`` (CPC v2,
            default), ``GRUContext`` (CPC v1) or ``TransformerContext``.
        projection_dim: size of the space where predictions meet targets.
        temperature: InfoNCE temperature (1.0: plain dot products, as in CPC).
        normalize: compare predictions and targets by cosine similarity (both
            L2-normalised) instead of plain dot products, as SimCLR and MoCo do; then a
            temperature well below 1 (e.g. 0.1) sharpens the softmax.
        skip_constant: leave out targets cut from constant patches (all one value: the
            black background of Fashion-MNIST) as positives and as negatives. Their latents
            are all equal, so no prediction can pick its own out of them. Near-blank patches
            (a few faint pixels) stay: on the validation split a trained encoder picks them
            out far above chance, and leaving them out as negatives does not change the
            accuracy on the other targets (``_informative``).
        augment: applied to the patches ``(B, Gh, Gw, C, P, P)`` in training; default
            ``PatchAugment()`` (flips, jitter, colour drop per patch); ``nn.Identity()`` disables.
        weight: factor of this loss in the total.
    """

    name = "cpc"

    def __init__(
        self,
        num_features: int,
        steps: Sequence[int] = (2, 3),
        directions: Sequence[Direction] = ("down",),
        context: Callable[[int], nn.Module] = MaskedConvContext,
        projection_dim: int = 64,
        temperature: float = 1.0,
        normalize: bool = False,
        skip_constant: bool = True,
        augment: nn.Module | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if not steps or min(steps) < 1:
            raise ValueError(f"steps must be a non-empty list of offsets >= 1, got {steps}")
        if not directions:
            raise ValueError("directions must name at least one of down, up, right, left")
        self.steps, self.directions = tuple(steps), tuple(directions)
        for direction in self.directions:
            orient(torch.zeros(1, 1, 1, 1), direction)  # unknown names fail here, not mid-fit
        self.temperature, self.normalize, self.skip_constant = temperature, normalize, skip_constant
        self.augment = augment if augment is not None else PatchAugment()
        self.target_proj = nn.Conv2d(num_features, projection_dim, 1)
        self.contexts = nn.ModuleDict({d: context(num_features) for d in self.directions})
        self.predictors = nn.ModuleDict(
            {
                d: nn.ModuleList(nn.Conv2d(num_features, projection_dim, 1) for _ in self.steps)
                for d in self.directions
            }
        )

    def forward(self, encoder: GridEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = encoder.patchify(images)  # (B, Gh, Gw, C, P, P)
        if self.training:
            patches = self.augment(patches)
        latents = encoder.encode_grid(patches)  # (B, D, Gh, Gw)
        targets = self.target_proj(latents)  # (B, Dp, Gh, Gw)
        informative = self._informative(patches)  # (B, 1, Gh, Gw) bool
        losses, accs, bounds = [], [], []
        for direction in self.directions:
            grid, target_grid = orient(latents, direction), orient(targets, direction)
            target_mask = orient(informative, direction)  # (B, 1, G, G')
            self._check_grid(grid.shape[2], direction)
            contexts = self.contexts[direction](grid)  # (B, D, G, G'), row-causal
            for k, predictor in zip(self.steps, self.predictors[direction], strict=True):
                pred = predictor(contexts[:, :, :-k])  # row r predicts row r + k: (B, Dp, G-k, G')
                true = target_grid[:, :, k:]  # (B, Dp, G-k, G')
                # (B, Dp, G-k, G') -> (B*(G-k)*G', Dp): each valid (image, r, c) once
                q = pred.permute(0, 2, 3, 1).reshape(-1, pred.shape[1])
                t = true.permute(0, 2, 3, 1).reshape(-1, true.shape[1])
                valid = target_mask[:, :, k:].reshape(-1)  # (B*(G-k)*G',)
                if self.normalize:
                    q, t = F.normalize(q, dim=1), F.normalize(t, dim=1)
                loss, correct, n = info_nce(q, t, self.temperature, valid)
                losses.append(loss)
                if correct.numel():  # an offset whose targets are all blank has no accuracy
                    accs.append(correct.float().mean())
                bounds.append(mi_lower_bound(loss.detach(), n))
        # every (direction, k) weighs the same, however many positions it has
        return {
            "loss": torch.stack(losses).mean(),
            "acc": torch.stack(accs).mean() if accs else latents.new_zeros(()),
            "mi_bound_nats": torch.stack(bounds).mean(),
        }

    def _informative(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, Gh, Gw, C, P, P)`` -> ``(B, 1, Gh, Gw)``: False where a patch is constant.

        The threshold (a spread of 1e-3, about a quarter of one 8-bit grey level) marks
        exactly constant patches. Raising it to leave out near-blank ones was checked on the
        validation split (``cpc fit`` checkpoint): their targets are harder but predicted far
        above chance, so they are not the interchangeable keys blank ones are, and removing
        them as negatives changes the other targets' accuracy by nothing and their loss only
        by the log of the candidate count; they stay.
        """
        b, gh, gw = patches.shape[:3]
        if not self.skip_constant:
            return torch.ones(b, 1, gh, gw, dtype=torch.bool, device=patches.device)
        flat = patches.detach().reshape(b, gh, gw, -1)  # (B, Gh, Gw, C*P*P)
        spread = flat.amax(dim=-1) - flat.amin(dim=-1)  # (B, Gh, Gw)
        return (spread > 1e-3)[:, None]

    def check_encoder(self, encoder: GridEncoder) -> None:
        """Refuse steps whose target patches share pixels with the context's rows."""
        size, stride = getattr(encoder, "patch_size", None), getattr(encoder, "patch_stride", None)
        if size is None or stride is None:
            return
        overlapping = [k for k in self.steps if k * stride < size]
        if overlapping:
            raise ValueError(
                f"CPC steps {overlapping} predict patches that overlap the context rows "
                f"(step * patch_stride {stride} < patch_size {size}): a copy shortcut; use "
                f"steps >= {-(-size // stride)}"
            )

    def _check_grid(self, rows: int, direction: Direction) -> None:
        if rows <= max(self.steps):
            raise ValueError(
                f"the grid has {rows} rows along direction {direction!r} but steps go up to "
                f"{max(self.steps)}: need at least {max(self.steps) + 1}; lower the steps, or the "
                "encoder's patch_size/patch_stride, or use larger images"
            )
