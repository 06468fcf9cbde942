"""Read a ``cpc fit`` checkpoint: its pretrained encoder (for use without Lightning), and the run
that wrote it: its ``config.yaml``, data module and evaluation protocol, as ``cpc eval`` and
``python -m cpc.viz`` load them. Lightning, cpc.data and cpc.eval are imported on use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

if TYPE_CHECKING:  # imports Lightning; the functions below import it when called
    from cpc.data import ImageDataModule
    from cpc.eval.protocol import EvalProtocol
    from cpc.run.console import Parser


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


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a file, else the newest ``last.ckpt`` (or newest ``*.ckpt``) under it."""
    path = Path(path)
    if path.is_file():
        return path
    ckpts = sorted(path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime) if path.is_dir() else []
    if not ckpts:
        raise FileNotFoundError(
            f"no checkpoint at {path}: pass a .ckpt file or a run folder holding one "
            "(`make run` trains one)"
        )
    return ([p for p in ckpts if p.name == "last.ckpt"] or ckpts)[-1]


def run_datamodule(
    ckpt_path: str | Path, data: ImageDataModule | str | Mapping[str, Any] | None = None
) -> ImageDataModule:
    """A prepared data module: ``data`` (a data module, or as a config names one: a class path
    such as ``"cpc.data.MNISTDataModule"`` or ``{"class_path": ..., "init_args": {...}}``), by
    default the ``data:`` section of the config.yaml of the run that wrote ``ckpt_path``."""
    from cpc.data import ImageDataModule

    if data is None:
        data = run_config(ckpt_path).get("data")
        if not data:
            raise ValueError(
                f"no config.yaml with a data section near {ckpt_path}: pass --data "
                "(e.g. --data cpc.data.FashionMNISTDataModule)"
            )
    dm = data if isinstance(data, ImageDataModule) else ImageDataModule.from_config(data)
    dm.prepare_data()
    return dm


def run_protocol(ckpt_path: str | Path) -> EvalProtocol:
    """The evaluation settings (``report:`` section) of the run that wrote ``ckpt_path``;
    the defaults of :class:`cpc.eval.EvalProtocol` where it has none."""
    from cpc.eval.protocol import EvalProtocol

    return EvalProtocol.from_mapping(run_config(ckpt_path).get("report") or {})


def run_parser(prog: str, description: str) -> Parser:
    """The options every command reading a run shares: ``--config`` (a YAML of the options) and
    ``--data`` (a data module as in ``cpc fit``; default: the run's own)."""
    from jsonargparse import ActionConfigFile

    from cpc.data import ImageDataModule
    from cpc.run.console import Parser

    parser = Parser(prog=prog, description=description)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML of these options")
    parser.add_subclass_arguments(
        ImageDataModule,
        "data",
        required=False,
        help="data module, as in `cpc fit`; default: the one in the run's config.yaml (found "
        "next to the checkpoint or one or two folders up)",
    )
    return parser
