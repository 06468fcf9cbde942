"""The contract every pretext task follows, so the module can combine any of them.

A task is a small ``nn.Module`` that owns its heads and turns a batch of images into a loss
using the shared encoder. Its first init argument is the encoder's feature size ``D``; the
module passes it, so configs never repeat it:

.. code-block:: yaml

    model:
      tasks:
        - class_path: cpc.tasks.CPCTask       # D is filled in by CPCModule
        - class_path: cpc.tasks.RotationTask
          init_args: {weight: 0.5}

Adding a task means writing one such class; no other task or the module changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn


class GridEncoder(Protocol):
    """What tasks may call on the shared encoder: images -> patch grid -> latent grid (every
    :class:`cpc.models.PatchEncoder`, e.g. ``ResNetEncoder``, has it all)."""

    num_features: int

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, Gh, Gw, C, P, P)``."""

    def encode_grid(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, Gh, Gw, C, P, P)`` -> ``(B, D, Gh, Gw)``."""

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, D, Gh, Gw)``."""


class Task(nn.Module):
    """Base of a pretext task.

    Subclasses set ``name`` (the logging prefix, e.g. ``train/cpc/loss``), take
    ``num_features`` first and ``weight`` last, and implement :meth:`forward`.

    Args:
        weight: factor of this task's loss in the total; 0 skips the task's compute entirely.
    """

    name: str = "task"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"{type(self).__name__} weight must be >= 0, got {weight}")
        self.weight = weight

    def forward(self, encoder: GridEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(B, C, H, W)`` in [0, 1] -> ``{"loss": scalar, <metric>: scalar, ...}``.

        Augment only when ``self.training``; validation sees clean images.
        """
        raise NotImplementedError

    def check_encoder(self, encoder: GridEncoder) -> None:
        """Raise ``ValueError`` (one line, saying what to change) if this task cannot work with
        ``encoder``'s geometry. Called by the module at construction, before any training."""


#: How configs give a task: a class (or partial) that takes the encoder's ``num_features``.
TaskFactory = Callable[[int], Task]
