import random

import numpy as np
import torch

from cpc.random_state import get_random_state, set_random_state


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
