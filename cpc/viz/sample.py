"""From a checkpoint to features: the encoders, the data and a seeded sample of both splits.

:func:`sample_features` gives a :class:`FeatureSample` (query and bank images, labels and every
encoder's features) that the figure modules take; :func:`random_init_like` is the baseline
encoder that shows what pretraining bought. The run's checkpoint, data module and protocol
come from :mod:`cpc.checkpoint`.

cpc.data, cpc.eval and cpc.checkpoint import Lightning (seconds): they are imported in the
functions below so that the plots stay light.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # imports Lightning; the functions below import it when called
    from cpc.data import ImageDataModule
    from cpc.eval.features import Pooling

log = logging.getLogger(__name__)


@dataclass
class FeatureSample:
    """Sampled query (test) and bank (train) images with every encoder's features.

    Attributes:
        class_names: name of each class index.
        query_images: uint8 ``(Q, C, H, W)``; query_labels: ``(Q,)``.
        bank_images: uint8 ``(N, C, H, W)``; bank_labels: ``(N,)``.
        query_features: ``{encoder name: (Q, F)}``; bank_features: ``{encoder name: (N, F)}``.
    """

    class_names: list[str]
    query_images: torch.Tensor
    query_labels: np.ndarray
    bank_images: torch.Tensor
    bank_labels: np.ndarray
    query_features: dict[str, np.ndarray]
    bank_features: dict[str, np.ndarray]


def random_init_like(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """The report's random-init baseline (:func:`cpc.eval.baselines.random_init`), in eval mode."""
    from cpc.eval.baselines import random_init

    return random_init(encoder, seed).eval()


def sample_features(
    encoders: Mapping[str, nn.Module],
    datamodule: ImageDataModule,
    sample: int = 2000,
    bank: int = 10000,
    seed: int = 0,
    batch_size: int = 256,
    pooling: Pooling = "mean",
    progress: bool = True,
) -> FeatureSample:
    """Seeded random subsets of the test split (queries; the val split when there is no test
    split) and the train split (the kNN bank), and every encoder's pooled features of both,
    in one pass over each subset (:func:`cpc.eval.features.extract_feature_sets`; ``pooling``
    is ``"mean"``, ``"grid"`` or ``"full"``, see :mod:`cpc.eval.features`).

    On a 2-core CPU the cost is the forward passes: ``(sample + bank) * len(encoders)`` images
    (about 100 s for 2000 + 10000 Fashion-MNIST images and two width-32 encoders); ``progress``
    shows a bar per subset.
    """
    try:
        queries = datamodule.dataset("test")
    except ValueError:  # an image folder without test_root
        log.warning("no test split: the queries come from the held-out val split")
        queries = datamodule.dataset("val")
    query_images, query_labels = _sample_images(queries, sample, seed)
    bank_images, bank_labels = _sample_images(datamodule.dataset("train"), bank, seed + 1)
    query_f = _features(encoders, query_images, query_labels, batch_size, pooling, progress)
    bank_f = _features(encoders, bank_images, bank_labels, batch_size, pooling, progress)
    return FeatureSample(
        list(datamodule.class_names), query_images, query_labels.numpy(),
        bank_images, bank_labels.numpy(), query_f, bank_f,
    )  # fmt: skip


def _sample_images(dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``min(n, len)`` items in dataset order: uint8 ``(n, C, H, W)`` and labels ``(n,)``."""
    if n < 1:
        raise ValueError(f"sample sizes must be >= 1, got {n}")
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    items = [dataset[int(i)] for i in perm[:n].sort().values]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def _features(
    encoders: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    pooling: Pooling,
    progress: bool,
) -> dict[str, np.ndarray]:
    from torch.utils.data import DataLoader, TensorDataset

    from cpc.eval.features import extract_feature_sets

    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size)
    features, _ = extract_feature_sets(encoders, loader, pooling, progress=progress)
    return {name: f.numpy() for name, f in features.items()}
