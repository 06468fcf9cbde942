import itertools

import pytest
import torch
from torch import nn

from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.tasks import JigsawTask
from cpc.tasks.jigsaw import all_permutations, hamming_permutations

P, STRIDE = 8, 4  # ResNetEncoder's patches: 28x28 images wrapped onto a torus -> 7x7 grid


def pairwise_hamming(perms: torch.Tensor) -> torch.Tensor:
    """Distances between distinct rows of ``(N, n)``, flattened."""
    d = (perms[:, None] != perms[None]).sum(-1)  # (N, N)
    return d[~torch.eye(len(perms), dtype=torch.bool)]


def test_all_permutations_are_every_ordering_once():
    perms = all_permutations(4)
    assert sorted(map(tuple, perms.tolist())) == list(itertools.permutations(range(4)))


def test_permutation_set_is_deterministic_for_a_seed_and_changes_with_it():
    a, b, c = (hamming_permutations(100, seed=s) for s in (0, 0, 1))
    assert a.equal(b) and not a.equal(c)
    assert a.shape == (100, 9) and a.dtype == torch.long


def test_default_set_has_the_distances_its_docstring_claims():
    perms = hamming_permutations(100, 9, seed=0)
    assert perms.sort(dim=1).values.equal(torch.arange(9).expand(100, 9))  # each a permutation
    distances = pairwise_hamming(perms)
    assert distances.min() == 6  # distinct, and at least 6 of 9 positions differ
    # farther apart than chance: two random permutations of 9 share 1 position on average
    # (each of the 9 matches with probability 1/9), so they differ in 9 - 1 = 8
    assert distances.float().mean() > 8


def test_each_choice_is_the_max_min_distance_over_all_permutations():
    """Slow reference on 5 tiles: at every step no permutation is farther from those chosen."""
    perms = hamming_permutations(20, num_tiles=5, seed=3)
    everything = torch.tensor(list(itertools.permutations(range(5))))  # (120, 5)
    for step in range(1, 20):
        chosen = perms[:step]
        nearest = (everything[:, None] != chosen[None]).sum(-1).min(dim=1).values  # (120,)
        assert (perms[step] != chosen).sum(-1).min() == nearest.max()
    assert len(set(map(tuple, perms.tolist()))) == 20


def test_permutation_set_is_saved_and_reloaded_exactly(tmp_path):
    saved = JigsawTask(8, num_permutations=30, seed=0)
    assert "permutations" in saved.state_dict()
    path = tmp_path / "jigsaw.pt"
    torch.save(saved.state_dict(), path)
    loaded = JigsawTask(8, num_permutations=30, seed=1)
    assert not loaded.permutations.equal(saved.permutations)
    loaded.load_state_dict(torch.load(path))
    assert loaded.permutations.equal(saved.permutations)


def test_module_checkpoint_keeps_the_set_it_was_trained_with(tmp_path):
    def task(num_features):
        return JigsawTask(num_features, num_permutations=30, seed=0)

    model = CPCModule(ResNetEncoder(width=4), tasks=[task])
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)

    def other(num_features):
        return JigsawTask(num_features, num_permutations=30, seed=5)

    reloaded = CPCModule(ResNetEncoder(width=4), tasks=[other])
    reloaded.load_state_dict(torch.load(path))
    assert reloaded.tasks["jigsaw"].permutations.equal(model.tasks["jigsaw"].permutations)


def test_puzzle_tiles_are_the_grid_patches_in_the_labelled_order():
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    task = JigsawTask(encoder.num_features, num_permutations=10).eval()
    images = torch.rand(4, 1, 28, 28)
    tiles, labels, offsets = task.make_puzzles(encoder, images)
    assert tiles.shape == (4, 9, 1, P, P)
    for b in range(4):
        order = task.permutations[labels[b]].tolist()
        for position, tile in enumerate(order):
            row = int(offsets[b, 0]) + 2 * (tile // 3)  # tile t sits at (t // 3, t % 3) of 3x3
            col = int(offsets[b, 1]) + 2 * (tile % 3)
            # on the torus rows and columns run on past the border into the opposite one
            rows = [(row * STRIDE + i) % 28 for i in range(P)]
            cols = [(col * STRIDE + j) % 28 for j in range(P)]
            assert tiles[b, position].equal(images[b][:, rows][:, :, cols])


def test_a_tiles_place_in_the_frame_does_not_tell_its_slot():
    """Lookup table from a tile's grid position to its slot in the 3x3 puzzle: at chance."""
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    task = JigsawTask(encoder.num_features, num_permutations=10, augment=nn.Identity()).train()
    _, labels, offsets = task.make_puzzles(encoder, torch.rand(4000, 1, 28, 28))
    slots = torch.arange(9).expand(4000, 9).flatten()  # (N*9,) which tile of the 3x3
    rows = (offsets[:, :1] + 2 * torch.div(torch.arange(9), 3, rounding_mode="floor")) % 7
    cols = (offsets[:, 1:] + 2 * (torch.arange(9) % 3)) % 7
    positions = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # (N*9, 2)
    counts = torch.zeros(7, 7, 9)
    half = len(slots) // 2
    counts.index_put_(
        (positions[:half, 0], positions[:half, 1], slots[:half]), torch.ones(half), accumulate=True
    )
    guess = counts.argmax(dim=2)[positions[half:, 0], positions[half:, 1]]
    assert (guess == slots[half:]).float().mean() < 1 / 9 + 0.02


def shared_pixels(task: JigsawTask, side: int) -> torch.Tensor:
    """Puzzles of ``side x side`` images whose pixels hold their own index: ``(B,)`` how
    many pixel indices each puzzle's 9 tiles repeat (0: the tiles are disjoint)."""
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=4)
    image = torch.arange(side * side, dtype=torch.float64).view(1, 1, side, side)
    tiles, _, offsets = task.train().make_puzzles(encoder, image.expand(1000, -1, -1, -1))
    assert len(set(map(tuple, offsets.tolist()))) == (side // STRIDE) ** 2  # every offset
    tags = tiles.flatten(1).sort(dim=1).values  # (B, 9*P*P)
    return (tags[:, 1:] == tags[:, :-1]).sum(dim=1)


@pytest.mark.parametrize(("spacing", "side"), [(2, 28), (2, 30), (3, 32)])
def test_no_two_tiles_of_a_puzzle_share_a_source_pixel(spacing, side):
    task = JigsawTask(8, num_permutations=10, spacing=spacing, augment=nn.Identity())
    assert (shared_pixels(task, side) == 0).all()


def test_spacing_whose_tiles_meet_across_the_wrap_is_one_clear_error(monkeypatch):
    """spacing=3 on the 7x7 grid of 28x28 images: the third tile of a row wraps round to 1
    step (4 pixels) from the first, though 3 * stride >= P and the grid is 2 * 3 + 1 wide."""
    task = JigsawTask(8, num_permutations=10, spacing=3, augment=nn.Identity())
    with pytest.raises(ValueError, match=r"spacing=3 on a 7x7 .* 4 pixels .* at least 32x32"):
        shared_pixels(task, 28)
    # without the check the first and third tiles of every row and column share pixels
    monkeypatch.setattr("cpc.tasks.jigsaw.check_no_wrap_overlap", lambda *args: None)
    assert (shared_pixels(task, 28) > 0).all()


def test_grid_too_small_is_one_clear_error():
    encoder = ResNetEncoder(width=4)
    task = JigsawTask(encoder.num_features, num_permutations=5)
    with pytest.raises(ValueError, match="grid is 4x4 but JigsawTask spacing=2 .* lower spacing"):
        task(encoder, torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize("kwargs", [{"num_permutations": 0}, {"spacing": 0}, {"hidden": -1}])
def test_bad_arguments_fail_at_construction(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        JigsawTask(8, **kwargs)
