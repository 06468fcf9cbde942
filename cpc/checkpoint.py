"""Load the pretrained encoder out of a ``cpc fit`` checkpoint, for use without Lightning."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def load_encoder(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The frozen patch encoder of a ``cpc fit`` checkpoint, in eval mode.

    The checkpoint's hyperparameters hold the full model config (LightningCLI stores it), so
    the module is rebuilt without extra arguments and its weights loaded; only the encoder is
    returned (the pretext heads are dropped).

    Args:
        path: a ``.ckpt`` written by ``cpc fit`` (e.g. ``last.ckpt`` or the best checkpoint).
        map_location: device the weights are loaded onto.

    Returns:
        The encoder: ``encoder(images)`` maps images ``(B, C, H, W)`` in ``[0, 1]`` to features
        ``(B, D)`` (``D = encoder.num_features``); ``encoder.forward_features(images)`` gives the
        latent grid ``(B, D, Gh, Gw)``.

    Raises:
        FileNotFoundError: when ``path`` is not a file.

    Example:
        >>> encoder = cpc.load_encoder("runs/lightning_logs/version_0/checkpoints/last.ckpt")
        >>> feats = encoder(images)  # (B, C, H, W) in [0, 1] -> (B, D)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from cpc.module import CPCModule  # Lightning is imported only when a checkpoint is loaded

    module = CPCModule.load_from_checkpoint(path, map_location=map_location)
    return module.encoder.eval()
