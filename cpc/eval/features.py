"""Features of a frozen encoder (or of raw pixels) for every image of a labelled loader.

The evaluation protocol of CPC (van den Oord et al., 2018, Sec. 3.2; Hénaff et al., 2019,
Sec. 4.2) trains a linear classifier on the frozen encoder's latent grid, spatially
mean-pooled. Features are extracted once per split and kept in memory (DINO's ``eval_knn.py``
does the same), so kNN and every linear-probe candidate reuse them; for banks larger than RAM,
``memmap=True`` keeps them in memory-mapped temporary files instead (:mod:`cpc.eval.storage`).

Pooling of the latent grid ``(B, D, Gh, Gw)``:

- ``"mean"``: the mean over the grid, ``(B, D)``: what the papers evaluate. Invariant to where
  in the image a patch code occurs.
- ``"grid"``: adaptive average pooling to 2x2, flattened, ``(B, 4*D)``: keeps a coarse spatial
  layout (which quadrant holds which code), which matters on centred, aligned images such as
  Fashion-MNIST, at 4x the feature size.
- ``"full"``: no pooling, the whole grid flattened, ``(B, D*Gh*Gw)``: every patch code at its
  place. The size grows with the image: prefer "mean" or "grid" for large images.

Chosen on the validation split (``benchmarks/ablation.py``: 5k Fashion-MNIST validation images,
bank = the 50k others, kNN / linear top-1 after 600 steps of CPC, default model): mean
81.7 / 79.1, grid 85.2 / 87.0, full 88.4 / 90.5; the same encoder at random init gives
74.2 / 71.1, 81.8 / 82.3 and 86.5 / 87.7, so compare against it. ``encoder(images)`` returns
the encoder's own compact pooling (``ResNetEncoder(pool_size=...)``), reported as "compact".

Loaders yield ``(images, labels)``; uint8 images become float32 in ``[0, 1]`` here, on the
device (as :meth:`cpc.data.ImageDataModule.on_after_batch_transfer` does inside a Trainer).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cpc.eval.compact import projection_ready
from cpc.eval.storage import FeatureStore
from cpc.eval.subsets import subset_loader, subset_rows

Pooling = Literal["mean", "grid", "full"]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def pool_grid(grid: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """Pool a latent grid into one vector per image.

    Args:
        grid: latent grid from ``encoder.forward_features``.
        pooling: ``"mean"`` (``D`` features), ``"grid"`` (2x2 average pool, ``4*D``) or
            ``"full"`` (no pooling, ``D*Gh*Gw``); see the module docstring.

    Shape:
        - grid: ``(B, D, Gh, Gw)``
        - output: ``(B, D)`` for ``"mean"``, ``(B, 4*D)`` for ``"grid"``, ``(B, D*Gh*Gw)`` for
          ``"full"``
    """
    if grid.ndim != 4:
        raise ValueError(f"expected a latent grid (B, D, Gh, Gw), got shape {tuple(grid.shape)}")
    if pooling == "mean":
        return grid.mean(dim=(2, 3))  # (B, D, Gh, Gw) -> (B, D)
    if pooling == "grid":
        return F.adaptive_avg_pool2d(grid, 2).flatten(1)  # (B, D, 2, 2) -> (B, 4*D)
    if pooling == "full":
        return grid.flatten(1)  # (B, D, Gh, Gw) -> (B, D*Gh*Gw)
    raise ValueError(f"pooling must be 'mean', 'grid' or 'full', got {pooling!r}")


def standardization(features: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of ``features`` ``(N, D)``, each ``(D,)``, for ``(x - mean) / std``.

    Features with std below ``eps`` (constant on this set) keep a scale of 1, as in
    scikit-learn's ``StandardScaler``. Computed on the training split only, then applied to
    every split.
    """
    std, mean = torch.std_mean(features.float(), dim=0)  # (D,) each
    return mean, torch.where(std < eps, torch.ones_like(std), std)


def extract_features(
    encoder: nn.Module,
    loader: Batches,
    pooling: Pooling = "mean",
    device: torch.device | str | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of a frozen encoder for every image of ``loader``, in loader order.

    The encoder runs in eval mode (each submodule's previous mode is restored afterwards),
    under ``torch.inference_mode()``, with bf16 autocast on CUDA GPUs that have bf16
    (:func:`bf16_features`; on CPUs bf16 changed the kNN accuracy a little, so not there).

    Args:
        encoder: has ``forward_features(images (B, C, H, W) in [0, 1]) -> (B, D, Gh, Gw)``.
        loader: yields ``(images, labels)``; uint8 images are scaled to ``[0, 1]``.
        pooling: ``"mean"``, ``"grid"`` or ``"full"``, see :func:`pool_grid`.
        device: where to run; default the encoder's device. The encoder is moved there for
            the call and moved back afterwards.
        progress: show a progress bar.

    Returns:
        ``(features, labels)``: float32 ``(N, F)`` and int64 ``(N,)``, on the CPU, with
        ``F = D`` (mean), ``4*D`` (grid) or ``D*Gh*Gw`` (full).

    Example:
        >>> feats, labels = extract_features(encoder, datamodule.eval_dataloader("val"))
    """
    features, labels = extract_feature_sets({"encoder": encoder}, loader, pooling, device, progress)
    return features["encoder"], labels


def pixel_features(loader: Batches, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened raw pixels in ``[0, 1]``, the no-learning baseline: ``(N, C*H*W)``, ``(N,)``."""
    features, labels = extract_feature_sets({}, loader, progress=progress, pixels=True)
    return features["pixels"], labels


def extract_feature_sets(
    encoders: Mapping[str, nn.Module],
    loader: Batches,
    pooling: Pooling = "mean",
    device: torch.device | str | None = None,
    progress: bool = True,
    pixels: bool = False,
    compact: bool = False,
    memmap: bool = False,
    desc: str = "features",
    bf16: bool | None = None,
    project: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Features of several encoders (and optionally raw pixels) in one pass over ``loader``.

    Each batch is loaded once and fed to every encoder, so a split is read once however many
    models are compared. Arguments are as in :func:`extract_features`; ``device`` defaults to
    the first encoder's device (CPU without encoders). With ``compact``, each encoder's
    pooled grid (``encoder.pool(grid)``: what ``encoder(images)`` returns, before the
    encoder's compact projection if it has one) is taken from the same latent grid too; with
    ``project`` as well, the pooled grids of every encoder whose projection is ready
    (:func:`~cpc.eval.compact.projection_ready`) go through it batch by batch
    (``encoder.compact``, in float32), so ``{name}_compact`` holds ``encoder(images)`` and the
    wider pooled grid is never kept.
    With ``memmap``, features go batch by batch to memory-mapped temporary files
    (:class:`cpc.eval.storage.FeatureStore`) instead of RAM. ``desc`` names the progress bar
    (say which split and models); ``bf16`` runs the encoders under bf16 autocast, by default
    on CUDA GPUs with bf16 (:func:`bf16_features`); features are returned in float32 either way.

    Returns:
        ``({name: features (N, F_name)}, labels (N,))``; with ``compact`` also
        ``{name}_compact``; with ``pixels`` the key ``"pixels"`` holding ``(N, C*H*W)``.
    """
    if device is None:
        device = next((device_of(e) for e in encoders.values()), torch.device("cpu"))
    device = torch.device(device)
    outputs = FeatureStore(memmap, _length(loader))  # name -> rows, appended batch by batch
    labels: list[torch.Tensor] = []
    bf16 = bf16_features(device) if bf16 is None else bf16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    projected = {
        name for name, e in encoders.items() if compact and project and projection_ready(e)
    }
    with contextlib.ExitStack() as stack:
        for encoder in encoders.values():
            stack.enter_context(_frozen_on(encoder, device))
        stack.enter_context(torch.inference_mode())
        for images, batch_labels in tqdm(loader, desc=desc, disable=not progress):
            images = _to_unit_float(images.to(device, non_blocking=True))
            for name, encoder in encoders.items():
                with autocast:
                    grid = encoder.forward_features(images)  # (B, D, Gh, Gw)
                    outputs[name].append(pool_grid(grid, pooling).float().cpu())
                    pooled = encoder.pool(grid).float() if compact else None  # (B, F)
                if name in projected:  # outside autocast: the projection runs in float32
                    pooled = encoder.compact(pooled)  # (B, F) -> (B, compact_features)
                if pooled is not None:
                    outputs[f"{name}_compact"].append(pooled.cpu())
            if pixels:
                outputs["pixels"].append(images.flatten(1).cpu())  # (B, C*H*W)
            labels.append(batch_labels.long().cpu())
    if not labels:
        raise ValueError("the loader yielded no batches: cannot extract features of nothing")
    return outputs.tensors(), torch.cat(labels)


def bf16_features(device: torch.device | str) -> bool:
    """Whether features are extracted under bf16 autocast on ``device`` by default: on CUDA
    GPUs with bf16 (:mod:`cpc.run.precision`'s rule), not on CPUs.

    On a CPU, bf16 features change the reported accuracies a little
    (``docs/results.md#representation-quality-at-20-minutes``), so CPUs keep float32
    (``bf16=True`` asks for it).
    """
    from cpc.run.precision import auto_precision

    device = torch.device(device)
    return device.type == "cuda" and auto_precision("cuda")[0] == "bf16-mixed"


#: training images the compact projection is fitted on: a seeded subset of the train split
#: (on the 20-minute checkpoints, 10k images gave val kNN / linear within 0.1 of all 55k)
COMPACT_FIT_IMAGES = 20_000


def compact_fit_rows(n: int) -> torch.Tensor:
    """The rows of an ``n``-image eval "train" split that :func:`compact_fit_features` fits
    on: a report fitting another encoder's projection (the random-init baseline) on features
    of the whole split takes these, so both are whitened on the same images."""
    return subset_rows(n, COMPACT_FIT_IMAGES)


def compact_fit_features(encoder: nn.Module, datamodule) -> torch.Tensor:
    """What ``encoder``'s compact projection is fitted on (``encoder.fit_compact``): the pooled
    grids (``encoder.pool``) of :data:`COMPACT_FIT_IMAGES` training images, ``(N, F)``: a
    seeded subset of the eval "train" split when the data module has one
    (``has_eval_splits``), else its first pretraining batches (e.g. a stream without labelled
    images). No labels are used."""
    if getattr(datamodule, "has_eval_splits", False):
        loader = subset_loader(datamodule.eval_dataloader("train"), COMPACT_FIT_IMAGES)
    else:
        train = datamodule.train_dataloader()
        loader = itertools.islice(train, math.ceil(COMPACT_FIT_IMAGES / train.batch_size))
    feats, _ = extract_feature_sets({"encoder": encoder}, loader, progress=False, compact=True)
    return feats["encoder_compact"]  # compact=True collects encoder.pool(grid), pre-projection


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 in [0, 1]; floating images pass through as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {images.dtype}")
    return images.float()


def _length(loader: Batches) -> int | None:
    """How many images a ``DataLoader`` yields (its sampler's length, all batches kept); None
    when it cannot say (an iterable dataset, a plain iterator)."""
    if not isinstance(loader, DataLoader) or loader.drop_last:
        return None
    try:
        return len(loader.sampler)
    except TypeError:  # a sampler without a length
        return None


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without any)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _frozen_on(module: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Eval mode on ``device`` for the duration; every submodule's mode and the device are
    restored afterwards (a module may mix modes, e.g. frozen BatchNorm inside a training net).
    """
    modes = [(m, m.training) for m in module.modules()]
    original = device_of(module)
    module.eval().to(device)
    try:
        yield module
    finally:
        module.to(original)
        for m, training in modes:
            m.training = training
