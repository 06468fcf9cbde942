import random

import numpy as np
import torch

from cpc.models.augment import PatchAugment
from cpc.run.random_state import (
    TrainingRandomState,
    get_random_state,
    seed_rank_stream,
    set_random_state,
)


def draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]  # noqa: NPY002


def test_set_random_state_replays_every_generator_and_survives_weights_only_loading(tmp_path):
    torch.manual_seed(0)
    state = get_random_state()
    first = draws()
    torch.save(state, tmp_path / "state.pt")
    set_random_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert draws() == first
    assert draws() != first  # the generators moved on


def augmented(seed: int, rank: int) -> torch.Tensor:
    """The patches of one fixed batch, augmented from rank ``rank``'s stream."""
    patches = torch.linspace(0, 1, 2 * 3 * 3 * 1 * 8 * 8).reshape(2, 3, 3, 1, 8, 8)
    seed_rank_stream(seed, rank)
    return PatchAugment()(patches)  # (B, Gh, Gw, C, P, P)


def test_ranks_draw_different_augmentations_for_the_same_batch_and_keep_the_run_seed():
    torch.manual_seed(0)
    rank_0, rank_1 = augmented(0, 0), augmented(0, 1)
    assert not torch.equal(rank_0, rank_1)
    assert torch.initial_seed() == 0  # the data module's shared train order reads it
    torch.testing.assert_close(augmented(0, 1), rank_1, rtol=0, atol=0)  # a pure function
    assert not torch.equal(augmented(1, 0), rank_0)  # another run's seed, another stream
    seed_rank_stream(0, 0)
    first = draws()
    seed_rank_stream(0, 1)
    assert all(a != b for a, b in zip(first, draws(), strict=True))  # numpy and Python too


def test_each_rank_loads_its_own_state_and_older_checkpoints_share_one():
    states = []
    for rank in (0, 1):
        seed_rank_stream(0, rank)
        states.append(get_random_state())
    callback = TrainingRandomState()
    callback.load_state_dict({"random_states": states})  # one process: rank 0
    set_random_state(callback.state)
    seed_rank_stream(0, 0)
    expected = draws()
    set_random_state(callback.state)
    assert draws() == expected
    callback.load_state_dict({"random_state": states[1]})  # saved before per-rank states
    assert callback.state is states[1]
    callback.state = states[0]
    assert callback.state_dict() == {"random_states": [states[0]]}
