"""The random state of training, carried from step to step and through checkpoints.

Augmentation and negative sampling draw from the global generators (torch, CUDA, numpy,
Python). :class:`TrainingRandomState` snapshots them at the end of every training batch and
sets them back at the start of the next one, so

- a checkpoint holds the exact state the next batch will draw from (a resumed run draws the
  same numbers as the uninterrupted one), and
- what runs between two batches (validation, online kNN, a new loader iterator) never shifts
  the training's draws.

``CPCModule.configure_callbacks`` adds it to every fit.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


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


class TrainingRandomState(L.Callback):
    """Random state from one training batch to the next, saved in checkpoints (see module)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None  # after the last trained batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.state is not None:
            set_random_state(self.state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.state = get_random_state()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.state is None else {"random_state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = state_dict.get("random_state")
