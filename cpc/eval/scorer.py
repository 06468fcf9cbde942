"""How the report scores one model's features: kNN, linear probe and few-label budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cpc.eval.knn import KNN
from cpc.eval.label_efficiency import budget_rows
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalProtocol


@dataclass(frozen=True)
class Scorer:
    """How the report scores features: one row per model.

    - kNN: bank ``"train"``, queries ``test_split`` and ``"val"`` (one index for both; the
      kNN's ``val_top1`` is what choices between features are made on);
    - linear probe: fit on ``"train"``, weight decay selected on ``"val"``, ``test_split``
      evaluated once (:func:`cpc.eval.linear_probe.linear_probe` with ``probe_kwargs``);
    - with ``protocol.label_budgets``, both again on few labels of ``"train"``
      (:func:`cpc.eval.label_efficiency.budget_rows`), under ``"budgets"``.

    A new kind of feature (another pooling) is another row.
    """

    num_classes: int
    protocol: EvalProtocol
    probe_kwargs: Mapping[str, Any]
    test_split: str = "test"

    def rows(
        self,
        features: Mapping[str, Mapping[str, torch.Tensor]],
        labels: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        """:meth:`row` of every model in ``features`` (``{split: {model: (N, F)}}``)."""
        return {
            name: self.row({split: features[split][name] for split in features}, labels)
            for name in features["train"]
        }

    def row(
        self, features: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
    ) -> dict[str, Any]:
        """``{"knn": ..., "linear": ...}`` of one model's features ``{split: (N, F)}``, labels
        ``{split: (N,)}``."""
        p, test = self.protocol, self.test_split
        knn = KNN(p).fit(features["train"], labels["train"], self.num_classes)
        row = knn.accuracy(features[test], labels[test])
        if test != "val":
            row["val_top1"] = knn.accuracy(features["val"], labels["val"])["top1"]
        probe = linear_probe(
            features["train"],
            labels["train"],
            features["val"],
            labels["val"],
            features[test],
            labels[test],
            self.num_classes,
            **self.probe_kwargs,
        )
        scored = {"knn": row, "linear": probe}
        if p.label_budgets:
            scored["budgets"] = budget_rows(
                features, labels, p, self.num_classes, self.probe_kwargs, test
            )
        return scored
