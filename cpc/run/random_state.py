"""The random state of training, carried from step to step and through checkpoints.

Augmentation and negative sampling draw from the global generators (torch, CUDA, numpy,
Python). :class:`TrainingRandomState` snapshots them at the end of every training batch and
sets them back at the start of the next one, so

- a checkpoint holds the exact state the next batch will draw from (a resumed run draws the
  same numbers as the uninterrupted one), and
- what runs between two batches (validation, online kNN, a new loader iterator) never shifts
  the training's draws.

Under DDP every rank starts from the same seed, so each would draw the same flips, jitter and
pretext labels as the others: the global batch would repeat each rank's augmentations. A fresh
fit on several ranks therefore seeds each rank's stream from the run's seed and its rank
(:func:`seed_rank_stream`, once the train loader, whose shared order reads the seed, is made),
and checkpoints keep every rank's state, so each rank resumes its own stream.

``CPCModule.configure_callbacks`` adds it to every fit.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist


def get_random_state() -> dict[str, Any]:
    """The global generators' states, as tensors and plain Python values (no numpy objects, so
    checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global one)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's device
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Set the global generators to :func:`get_random_state`'s ``state``."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    legacy = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    np.random.set_state(legacy)  # noqa: NPY002 (the global one)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_rank_stream(seed: int, rank: int) -> None:
    """Seed the global generators (torch, CUDA, numpy, Python) from ``(seed, rank)``: one
    independent stream per rank (numpy's ``SeedSequence`` mixes the two, so nearby seeds and
    ranks give unrelated streams).

    ``torch.initial_seed()`` stays ``seed`` on every rank: the data module seeds the train
    order, which all ranks share, with it. (It is the first 8 bytes of the CPU generator's
    state; a torch that stores it elsewhere fails here, not with silently split orders.)
    """
    torch_seed, python_seed = np.random.SeedSequence([seed, rank]).generate_state(2, np.uint64)
    torch.manual_seed(int(torch_seed) % 2**63)  # also every CUDA device's generator
    state = torch.get_rng_state()
    state[:8] = torch.from_numpy(np.array([seed], dtype=np.uint64).view(np.uint8))
    torch.set_rng_state(state)
    if torch.initial_seed() != seed:
        raise RuntimeError(
            "this torch keeps the generator's initial seed elsewhere in its state: "
            "cpc.run.random_state.seed_rank_stream needs updating"
        )
    np.random.seed(np.random.SeedSequence([seed, rank, 1]).generate_state(4))  # noqa: NPY002
    random.seed(int(python_seed))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class TrainingRandomState(L.Callback):
    """Random state from one training batch to the next, per rank, saved in checkpoints (see
    the module's docstring)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None  # this rank's, after the last trained batch

    def on_train_start(self, trainer, pl_module) -> None:
        """A fresh fit on several ranks (or a rank the checkpoint has no state for): this
        rank's own stream, from the run's seed (``seed_everything``) and the rank."""
        if self.state is None and trainer.world_size > 1:
            seed_rank_stream(torch.initial_seed(), trainer.global_rank)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.state is not None:
            set_random_state(self.state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.state = get_random_state()

    def state_dict(self) -> dict[str, Any]:
        """``{"random_states": [rank 0's, rank 1's, ...]}`` (gathered from every rank: saving a
        checkpoint is collective under DDP)."""
        states = [self.state]
        if _distributed():
            states = [None] * dist.get_world_size()
            dist.all_gather_object(states, self.state)
        return {} if all(state is None for state in states) else {"random_states": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """This rank's state; a rank the checkpoint has none for (it was saved by fewer ranks)
        starts its own stream. Older checkpoints hold one state, which every rank shared."""
        rank = dist.get_rank() if _distributed() else 0
        states = state_dict.get("random_states", [])
        if "random_state" in state_dict:
            states = [state_dict["random_state"]] * (rank + 1)
        self.state = states[rank] if rank < len(states) else None
