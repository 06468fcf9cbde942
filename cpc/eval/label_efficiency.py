"""Few labels: kNN and linear probe of frozen features trained on a class-balanced subset.

The setting of CPC v2 (Hénaff et al., 2020, "Data-Efficient Image Recognition with Contrastive
Predictive Coding", Sec. 4.2): many unlabelled images, few labels. For each budget (labels per
class) and each draw (seed) of :func:`cpc.data.subset.class_balanced_subset`, the labelled
subset of the ``"train"`` split is the kNN bank and the probe's training set; val and test
are scored as in the all-labels report.

What needs no labels uses every training image: the kNN's PCA and standardisation
(``knn_pca``, ``knn_standardize``) and the probe's standardisation are fitted on the whole
``"train"`` split, as a user with many unlabelled images would fit them. With 100 labels a
PCA of the bank alone would keep 99 directions at most, whitened from 100 points.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from cpc.data.subset import class_balanced_subset
from cpc.eval.features import standardization
from cpc.eval.knn import KNN
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalProtocol
from cpc.models.projection import principal_components

#: the probe on a few labels: more steps than epochs give, and stronger penalties to choose from
BUDGET_PROBE = {"min_steps": 300, "weight_decays": (0.0, 1e-4, 1e-3, 1e-2, 1e-1)}


def unlabelled_transform(
    train: torch.Tensor, protocol: EvalProtocol
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The kNN's feature transform fitted on all ``train`` features ``(N, F)``, no labels:
    projection on the top ``knn_pca`` principal components, then ``knn_standardize``'s
    per-feature standardisation (together: whitening)."""
    mean, basis, scale = torch.zeros(0), None, None
    if 0 < protocol.knn_pca < train.shape[1]:
        mean, basis, variances = principal_components(train.float(), protocol.knn_pca)
        scale = variances.clamp_min(1e-12).sqrt() if protocol.knn_standardize else None
    elif protocol.knn_standardize:
        mean, scale = standardization(train)

    def transform(rows: torch.Tensor) -> torch.Tensor:
        x = rows.float()
        if basis is not None:
            x = (x - mean) @ basis  # (n, F) -> (n, pca)
        elif scale is not None:
            x = x - mean
        return x if scale is None else x / scale

    return transform


def budget_rows(
    features: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    protocol: EvalProtocol,
    num_classes: int,
    probe_kwargs: Mapping[str, Any],
    test_split: str = "test",
) -> dict[str, Any]:
    """``{budget: {"knn": stats, "linear": stats}}`` of one model's features ``{split: (N, F)}``
    for every ``protocol.label_budgets`` (labels per class), over ``protocol.label_draws``
    draws; ``stats = {"top1", "top1_std", "val_top1", "draws": [test top-1 of each draw]}``."""
    transform = unlabelled_transform(features["train"], protocol)
    knn_features = {split: transform(f) for split, f in features.items()}
    plain = replace(protocol, knn_standardize=False, knn_pca=0)  # transformed already
    probe = {**BUDGET_PROBE, **probe_kwargs}
    rows: dict[str, Any] = {}
    for budget in protocol.label_budgets:
        knn_draws, probe_draws = [], []
        for draw in range(protocol.label_draws):
            subset = class_balanced_subset(labels["train"], budget, seed=draw)  # (budget*C,)
            bank, bank_labels = knn_features["train"][subset], labels["train"][subset]
            knn = KNN(plain).fit(bank, bank_labels, num_classes)
            knn_draws.append(
                {
                    **knn.accuracy(knn_features[test_split], labels[test_split]),
                    "val_top1": knn.accuracy(knn_features["val"], labels["val"])["top1"],
                }
            )
            probe_draws.append(
                linear_probe(
                    features["train"][subset],
                    bank_labels,
                    features["val"],
                    labels["val"],
                    features[test_split],
                    labels[test_split],
                    num_classes,
                    standardize_with=features["train"],
                    **probe,
                )
            )
        rows[str(budget)] = {"knn": summary(knn_draws), "linear": summary(probe_draws)}
    return rows


def summary(draws: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over draws of test top-1, mean of val top-1, and each draw's test top-1."""
    top1 = [d["top1"] for d in draws]
    return {
        "top1": statistics.fmean(top1),
        "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
        "val_top1": statistics.fmean(d["val_top1"] for d in draws),
        "draws": top1,
    }
