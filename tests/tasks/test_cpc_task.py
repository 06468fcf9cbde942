import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cpc.models.context import GRUContext, MaskedConvContext, TransformerContext
from cpc.tasks.cpc import CPCTask, orient


class FixedGrid(nn.Module):
    """A stand-in encoder whose latent grid is given: lets tests reason about positions.

    Its patches are random (never constant) unless ``blank`` marks grid cells ``(B, G, G)``
    whose patch is all zeros.
    """

    def __init__(self, grid: torch.Tensor, blank: torch.Tensor | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.num_features = grid.shape[1]
        b, _, gh, gw = grid.shape
        self.patches = torch.rand(b, gh, gw, 1, 2, 2) + 0.1  # (B, Gh, Gw, C, P, P)
        if blank is not None:
            self.patches[blank] = 0.0

    def patchify(self, images):
        return self.patches

    def encode_grid(self, patches):
        return self.grid


def reference_loss(task: CPCTask, latents: torch.Tensor, blank=None) -> torch.Tensor:
    """Slow loop: per (direction, k), each (image, r, c) whose target (r + k, c) is not a blank
    patch predicts it against all non-blank targets."""
    targets = task.target_proj(latents)
    if blank is None:
        blank = torch.zeros(latents.shape[0], *latents.shape[2:], dtype=torch.bool)
    per_offset = []
    for d in task.directions:
        grid, tgrid = orient(latents, d), orient(targets, d)
        oblank = orient(blank[:, None], d)[:, 0]  # (B, G, G')
        ctx = task.contexts[d](grid)
        b, _, rows, cols = grid.shape
        for k, head in zip(task.steps, task.predictors[d], strict=True):
            pred = head(ctx)
            cells = [
                (i, r, c)
                for i in range(b)
                for r in range(rows - k)
                for c in range(cols)
                if not oblank[i, r + k, c]
            ]
            keys = torch.stack([tgrid[i, :, r + k, c] for i, r, c in cells])  # (M, Dp)
            if task.normalize:
                keys, pred = F.normalize(keys, dim=1), F.normalize(pred, dim=1)
            losses = []
            for j, (i, r, c) in enumerate(cells):
                logits = keys @ pred[i, :, r, c] / task.temperature  # (M,)
                losses.append(-F.log_softmax(logits, dim=0)[j])
            per_offset.append(torch.stack(losses).mean())
    return torch.stack(per_offset).mean()


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("directions", [("down",), ("down", "up", "right", "left")])
def test_loss_equals_loop_reference_each_offset_weighted_once(directions, normalize):
    torch.manual_seed(0)
    task = CPCTask(
        8,
        steps=(1, 2),
        directions=directions,
        projection_dim=4,
        temperature=0.5,
        normalize=normalize,
    )
    latents = torch.randn(2, 8, 4, 3 if directions == ("down",) else 4)
    out = task.eval()(FixedGrid(latents), latents)
    torch.testing.assert_close(out["loss"], reference_loss(task, latents))


def test_blank_patches_are_left_out_as_targets_and_negatives():
    torch.manual_seed(0)
    task = CPCTask(8, steps=(1, 2), directions=("down", "left"), projection_dim=4).eval()
    latents = torch.randn(2, 8, 4, 4)
    blank = torch.rand(2, 4, 4) < 0.4
    out = task(FixedGrid(latents, blank), latents)
    torch.testing.assert_close(out["loss"], reference_loss(task, latents, blank))
    task.skip_constant = False  # every target counts again
    torch.testing.assert_close(
        task(FixedGrid(latents, blank), latents)["loss"], reference_loss(task, latents)
    )


def test_an_all_blank_batch_gives_a_zero_loss_not_nan():
    task = CPCTask(8, steps=(2,), projection_dim=4).eval()
    latents = torch.randn(2, 8, 5, 5, requires_grad=True)
    out = task(FixedGrid(latents, torch.ones(2, 5, 5, dtype=torch.bool)), latents)
    out["loss"].backward()
    assert out["loss"].item() == 0 and out["acc"].item() == 0 and out["mi_bound_nats"] == 0


def test_mi_bound_counts_only_informative_candidates():
    torch.manual_seed(0)
    task = CPCTask(8, steps=(2,), projection_dim=4).eval()
    latents = torch.randn(3, 8, 5, 5)
    blank = torch.zeros(3, 5, 5, dtype=torch.bool)
    blank[0, 4] = True  # 5 blank targets in the last row of image 0
    out = task(FixedGrid(latents, blank), latents)
    n = 3 * (5 - 2) * 5 - 5
    torch.testing.assert_close(out["mi_bound_nats"], math.log(n) - out["loss"])


def test_steps_whose_targets_overlap_the_context_are_refused():
    from cpc.models.encoder import ResNetEncoder
    from cpc.module import CPCModule

    encoder = ResNetEncoder(width=8, patch_size=8, patch_stride=4)
    with pytest.raises(ValueError, match=r"steps \[1\] .*overlap.*use steps >= 2"):
        CPCModule(encoder, tasks=[partial(CPCTask, steps=(1, 2))])
    with pytest.raises(ValueError, match=r"steps \[2, 3\] .*overlap.*use steps >= 4"):
        CPCModule(ResNetEncoder(width=8, patch_stride=2), tasks=[CPCTask])
    CPCModule(encoder, tasks=[partial(CPCTask, steps=(2, 3))])  # 2 * 4 >= 8: no shared pixel


def test_orient_turns_each_direction_into_top_down():
    grid = torch.arange(6.0).view(1, 1, 2, 3)  # rows [0 1 2], [3 4 5]
    assert orient(grid, "down").equal(grid)
    assert orient(grid, "up")[0, 0, 0].tolist() == [3, 4, 5]  # bottom row comes first
    assert orient(grid, "right")[0, 0, 0].tolist() == [0, 3]  # first column comes first
    assert orient(grid, "left")[0, 0, 0].tolist() == [2, 5]  # last column comes first


@pytest.mark.parametrize("context", [MaskedConvContext, GRUContext, TransformerContext])
def test_predictions_for_up_never_see_the_rows_they_predict(context):
    """Row r of the bottom-up prediction must not change when rows above it change."""
    torch.manual_seed(0)
    task = CPCTask(8, steps=(1,), directions=("up",), context=context, projection_dim=4).eval()
    latents = torch.randn(1, 8, 5, 5)
    changed = latents.clone()
    changed[:, :, :2] += 1.0  # the two top rows
    ctx_a = task.contexts["up"](orient(latents, "up"))
    ctx_b = task.contexts["up"](orient(changed, "up"))
    # oriented rows 0..2 are original rows 4..2: they come before the change
    torch.testing.assert_close(ctx_a[:, :, :3], ctx_b[:, :, :3])
    assert not torch.allclose(ctx_a[:, :, 3:], ctx_b[:, :, 3:])


def test_grid_too_small_for_steps_is_one_clear_error():
    task = CPCTask(8, steps=(2, 3), directions=("down", "right"))
    latents = torch.randn(1, 8, 6, 3)  # enough rows, too few columns for "right"
    with pytest.raises(ValueError, match="3 rows along direction 'right'.*lower the steps"):
        task(FixedGrid(latents), latents)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": ()}, "steps"), ({"steps": (0, 1)}, "steps"), ({"directions": ("diag",)}, "diag")],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CPCTask(8, **kwargs)
