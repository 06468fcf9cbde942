from pathlib import Path

import pytest
import torch
from helpers import quick_fit_args
from torch import nn

from cpc.cli import cli_main
from cpc.models.encoder import ResNetEncoder
from cpc.tasks import PatchPositionTask
from cpc.tasks.patch_position import DIRECTIONS

CONFIGS = Path(__file__).parents[2] / "configs" / "tasks"
FASHION_MNIST = CONFIGS.parent / "fashion_mnist.yaml"
P, STRIDE = 8, 4  # ResNetEncoder's patches: 28x28 images wrapped onto a torus -> 7x7 grid
# label -> (rows down, columns right) of the neighbour, written out from the paper's figure 2
BY_HAND = {
    0: (-1, -1),  # top-left
    1: (-1, 0),  # top
    2: (-1, 1),  # top-right
    3: (0, -1),  # left
    4: (0, 1),  # right
    5: (1, -1),  # bottom-left
    6: (1, 0),  # bottom
    7: (1, 1),  # bottom-right
}


def crop(image, row, col):
    """The patch at grid (row, col) of ``image`` (C, H, W) wrapped onto a torus, cut by hand:
    rows and columns run on past the border into the opposite one. ``(C, P, P)``."""
    h, w = image.shape[-2:]
    rows = [(row * STRIDE + i) % h for i in range(P)]
    cols = [(col * STRIDE + j) % w for j in range(P)]
    return image[:, rows][:, :, cols]


def test_directions_table_is_the_8_neighbours_in_reading_order():
    assert dict(enumerate(DIRECTIONS)) == BY_HAND


@pytest.mark.parametrize("gap", [2, 3])
def test_pairs_are_the_centre_and_the_neighbour_its_label_names(gap):
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    task = PatchPositionTask(encoder.num_features, gap=gap, pairs_per_image=4).eval()
    images = torch.rand(3, 1, 28 if gap == 2 else 32, 28 if gap == 2 else 32)
    pairs = task.make_pairs(encoder, images)
    assert pairs.patches.shape == (3, 4, 2, 1, P, P)
    for b in range(3):
        for k in range(4):
            r, c = pairs.centres[b, k].tolist()
            dr, dc = BY_HAND[int(pairs.labels[b, k])]
            assert pairs.patches[b, k, 0].equal(crop(images[b], r, c))
            assert pairs.patches[b, k, 1].equal(crop(images[b], r + gap * dr, c + gap * dc))


def positions_predict_labels(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Held-out accuracy of the best lookup table from discrete ``features`` (N, F) to labels:
    what a classifier that sees only these features can reach."""
    half = len(labels) // 2
    keys = [tuple(f) for f in features.tolist()]
    votes: dict[tuple, torch.Tensor] = {}
    for key, label in zip(keys[:half], labels[:half].tolist(), strict=True):
        votes.setdefault(key, torch.zeros(int(labels.max()) + 1))[label] += 1
    guesses = [int(votes[k].argmax()) if k in votes else 0 for k in keys[half:]]
    return (torch.tensor(guesses) == labels[half:]).float().mean().item()


def test_absolute_positions_do_not_give_the_label_away():
    """The neighbour's (and the centre's) place in the frame says nothing about the label."""
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    task = PatchPositionTask(encoder.num_features, pairs_per_image=500, augment=nn.Identity())
    pairs = task.train().make_pairs(encoder, torch.rand(80, 1, 28, 28))
    labels = pairs.labels.flatten()  # (40000,)
    step = 2 * torch.tensor(DIRECTIONS)[labels]  # (N, 2)
    centres = pairs.centres.flatten(0, 1)  # (N, 2)
    neighbours = (centres + step) % 7
    for features in (neighbours, centres):
        assert positions_predict_labels(features, labels) < 1 / 8 + 0.02
    # sanity of the probe: both positions together do give the label away
    assert positions_predict_labels(torch.cat([centres, neighbours], 1), labels) == 1.0


def test_default_pairs_never_overlap_and_cover_every_direction_and_centre():
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    task = PatchPositionTask(encoder.num_features, pairs_per_image=50, augment=nn.Identity())
    pairs = task.train().make_pairs(encoder, torch.rand(8, 1, 28, 28))
    step = torch.tensor(DIRECTIONS)[pairs.labels] * task.gap * STRIDE  # (B, K, 2) pixels apart
    assert (step.abs().amax(dim=-1) >= P).all()  # disjoint boxes: apart by >= P on some axis
    assert set(pairs.labels.flatten().tolist()) == set(range(8))
    every_cell = {(r, c) for r in range(7) for c in range(7)}
    assert set(map(tuple, pairs.centres.flatten(0, 1).tolist())) == every_cell


def test_pairs_share_no_source_pixel_when_the_stride_does_not_divide_the_side():
    """30x30 (cropped to 28x28): each pair's pixels, tagged with their index, are disjoint."""
    encoder = ResNetEncoder(width=4)
    task = PatchPositionTask(encoder.num_features, pairs_per_image=2000, augment=nn.Identity())
    image = torch.arange(900, dtype=torch.float64).view(1, 1, 30, 30)
    pairs = task.train().make_pairs(encoder, image)
    # (1, K, 2, 1, P, P) -> (K, 2*P*P) sorted: a pixel in both patches repeats in its row
    tags = pairs.patches.flatten(2).squeeze(0).sort(dim=1).values
    assert not (tags[:, 1:] == tags[:, :-1]).any()
    assert len(set(map(tuple, pairs.centres[0].tolist()))) == 49  # every centre of the 7x7


def test_head_sees_centre_features_then_neighbour_features():
    """A stand-in encoder whose features are (patch mean, patch top-left pixel)."""

    class MeanAndCorner(nn.Module):
        num_features, patch_size, patch_stride = 2, P, STRIDE

        def patchify(self, images):
            return images.unfold(2, P, STRIDE).unfold(3, P, STRIDE).permute(0, 2, 3, 1, 4, 5)

        def encode_grid(self, patches):  # (B, Gh, Gw, C, P, P) -> (B, 2, Gh, Gw)
            feats = torch.stack([patches.mean(dim=(3, 4, 5)), patches[..., 0, 0, 0]], dim=1)
            return feats

    seen = []
    task = PatchPositionTask(2, hidden=0, pairs_per_image=3).eval()
    task.head.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    images = torch.rand(2, 1, 28, 28)
    task(MeanAndCorner(), images)
    pairs = task.make_pairs(MeanAndCorner(), images)  # eval: the same pairs again
    centre, neighbour = pairs.patches[:, :, 0].flatten(0, 1), pairs.patches[:, :, 1].flatten(0, 1)
    expected = torch.stack(
        [
            centre.mean(dim=(1, 2, 3)),
            centre[:, 0, 0, 0],
            neighbour.mean(dim=(1, 2, 3)),
            neighbour[:, 0, 0, 0],
        ],
        dim=1,
    )  # (B*K, 2D) = [centre D | neighbour D]
    torch.testing.assert_close(seen[0], expected)


def test_evaluation_pairs_are_fixed_training_pairs_are_random():
    encoder = ResNetEncoder(width=4)
    task = PatchPositionTask(encoder.num_features, pairs_per_image=8)
    images = torch.rand(4, 1, 28, 28)
    a, b = task.eval().make_pairs(encoder, images), task.make_pairs(encoder, images)
    assert a.labels.equal(b.labels) and a.centres.equal(b.centres) and a.patches.equal(b.patches)
    c, d = task.train().make_pairs(encoder, images), task.make_pairs(encoder, images)
    assert not c.labels.equal(d.labels)


@pytest.mark.parametrize(
    ("gap", "size", "message"),
    [
        (2, 16, r"grid is 4x4 but PatchPositionTask gap=2 needs at least 5x5.*lower gap"),
        (3, 24, r"grid is 6x6 but PatchPositionTask gap=3 needs at least 7x7"),
        (1, 28, r"gap=1 with patch_stride=4 .* overlap .* use gap >= 2"),
    ],
)
def test_grid_too_small_or_overlapping_pair_is_one_clear_error(gap, size, message):
    encoder = ResNetEncoder(width=4)
    with pytest.raises(ValueError, match=message):
        PatchPositionTask(encoder.num_features, gap=gap)(encoder, torch.rand(1, 1, size, size))


@pytest.mark.parametrize("kwargs", [{"gap": 0}, {"pairs_per_image": 0}, {"hidden": -1}])
def test_bad_arguments_fail_at_construction(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PatchPositionTask(8, **kwargs)


def fit_args(folder: Path, out: Path, config: str) -> list[str]:
    """A task fragment over configs/fashion_mnist.yaml, on the tiny image folder: 2 train
    steps, 1 val batch."""
    return quick_fit_args(folder, out, config=[FASHION_MNIST, CONFIGS / config])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "tasks"),
    [
        ("patch_position.yaml", ["patch_position"]),
        ("cpc_patch_position.yaml", ["cpc", "patch_position"]),
    ],
)
def test_configs_train_through_the_cli_and_log_each_task(tiny_folder, tmp_path, config, tasks):
    cli = cli_main(fit_args(tiny_folder, tmp_path, config))
    logged = cli.trainer.callback_metrics
    assert list(cli.model.tasks) == tasks
    for name in tasks:
        assert torch.isfinite(logged[f"train/{name}/loss"]) and f"val/{name}/acc" in logged
    total = sum(logged[f"train/{name}/loss"] for name in tasks)
    torch.testing.assert_close(logged["train/loss"], total)
