"""Read a ``cpc fit`` checkpoint: its pretrained encoder (for use without Lightning) and the
config of the run that wrote it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn


def load_encoder(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The frozen patch encoder of a ``cpc fit`` checkpoint, in eval mode.

    The checkpoint's hyperparameters hold the full model config (LightningCLI stores it), so
    the module is rebuilt without extra arguments and its weights loaded; only the encoder is
    returned (the pretext heads are dropped).

    Args:
        path: a ``.ckpt`` written by ``cpc fit``: ``last.ckpt`` of a finished run for
            ``encoder(images)``; any checkpoint (the best by ``val/loss``, a mid-run one) for
            ``encoder.forward_features(images)``.
        map_location: device the weights are loaded onto.

    Returns:
        The encoder: ``encoder(images)`` maps images ``(B, C, H, W)`` in ``[0, 1]`` to the
        compact feature ``(B, encoder.compact_features)``: the latent grid averaged to
        ``pool_size x pool_size`` cells (``D * pool_size**2`` values, ``D =
        encoder.num_features``), PCA-whitened to ``compact_dim`` values when the encoder has
        one (512 in the shipped configs). That projection is fitted at the end of ``cpc fit``
        and saved in ``last.ckpt`` only: on another checkpoint ``encoder(images)`` raises, and
        ``encoder.forward_features(images)`` still gives the latent grid ``(B, D, Gh, Gw)``.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when it is not a checkpoint, or a truncated or damaged one (its sha256
            differs from the one written with it: :func:`cpc.run.preflight.check_checkpoint`).

    Example:
        >>> encoder = cpc.load_encoder("runs/lightning_logs/version_0/checkpoints/last.ckpt")
        >>> feats = encoder(images)  # (B, C, H, W) in [0, 1] -> (B, encoder.compact_features)
    """
    from cpc.module import CPCModule  # Lightning is imported only when a checkpoint is loaded
    from cpc.run.preflight import check_checkpoint

    path = Path(path)
    check_checkpoint(path)

    module = CPCModule.load_from_checkpoint(path, map_location=map_location)
    return module.encoder.eval()


def run_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.yaml`` of the run that wrote checkpoint ``path`` (LightningCLI saves it in
    the log dir, which holds ``checkpoints/``), searched in the checkpoint's folder and two
    folders up; ``{}`` if there is none. Its ``data`` and ``report`` sections give the data
    module and the evaluation protocol of ``cpc eval`` and ``cpc.viz``."""
    path = Path(path)
    for folder in [path.parent, *list(path.parents)[1:3]]:
        config = folder / "config.yaml"
        if config.is_file():
            return yaml.safe_load(config.read_text()) or {}
    return {}
