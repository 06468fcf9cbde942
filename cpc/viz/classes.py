"""Class by class: the weighted kNN classifier of Wu et al. (2018) / DINO
(:class:`cpc.eval.knn.KNN`), its per-class accuracy table and confusion matrices."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure

from cpc.viz._common import Panels, _labels, _maybe_save, _panels
from cpc.viz.sample import FeatureSample

if TYPE_CHECKING:  # imports Lightning; knn_predictions imports the eval package when called
    from cpc.eval.protocol import EvalProtocol


def confusion_matrix(
    labels: np.ndarray | torch.Tensor, predictions: np.ndarray | torch.Tensor, num_classes: int
) -> np.ndarray:
    """Counts ``(C, C)``: row = true class, column = predicted class; sums to ``len(labels)``."""
    true, pred = _labels(labels, num_classes), _labels(predictions, num_classes)
    if true.shape != pred.shape:
        raise ValueError(f"labels {true.shape} and predictions {pred.shape} differ in shape")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes**2)  # (C*C,)
    return flat.reshape(num_classes, num_classes)  # (C*C,) -> (C, C)


def per_class_knn_table(
    labels: np.ndarray | torch.Tensor, predictions: Panels, class_names: Sequence[str]
) -> list[dict[str, str | int | float]]:
    """One row per class (then ``all``): ``{"class", "n", <panel name>: accuracy, ...}``.

    Args:
        labels: true classes ``(Q,)``.
        predictions: predicted classes ``(Q,)``, or ``{name: (Q,)}`` for a column per encoder
            (a single array gets the column ``"accuracy"``).
        class_names: name of each class index.

    Returns:
        Rows ready for :func:`format_table`; accuracy is ``nan`` for a class with no query.
    """
    panels = {name or "accuracy": p for name, p in _panels(predictions, len(labels)).items()}
    matrices = {name: confusion_matrix(labels, p, len(class_names)) for name, p in panels.items()}
    counts = next(iter(matrices.values())).sum(axis=1)  # (C,) queries per true class
    rows: list[dict[str, str | int | float]] = []
    for c, class_name in enumerate(class_names):
        row: dict[str, str | int | float] = {"class": class_name, "n": int(counts[c])}
        for name, m in matrices.items():
            row[name] = m[c, c] / counts[c] if counts[c] else math.nan
        rows.append(row)
    total = {name: np.trace(m) / max(1, m.sum()) for name, m in matrices.items()}
    rows.append({"class": "all", "n": int(counts.sum()), **total})
    return rows


def format_table(rows: Sequence[Mapping[str, str | int | float]]) -> str:
    """Plain-text table with a header; floats as percentages with one decimal."""

    def cell(value: str | int | float) -> str:
        if isinstance(value, float | np.floating):
            return "-" if math.isnan(value) else f"{100 * value:.1f}%"
        return str(value)

    header = list(rows[0])
    body = [[cell(row[key]) for key in header] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [[str(h) for h in header], ["-" * w for w in widths], *body]
    return "\n".join("  ".join(s.rjust(w) for s, w in zip(ln, widths, strict=True)) for ln in lines)


def confusion_matrix_figure(
    labels: np.ndarray | torch.Tensor,
    predictions: Panels,
    class_names: Sequence[str],
    save: str | Path | None = None,
) -> Figure:
    """Confusion matrices (one panel per encoder): colour = row-normalised recall, text = counts.

    Args:
        labels: true classes ``(Q,)``.
        predictions: predicted classes ``(Q,)`` or ``{name: (Q,)}``.
        class_names: name of each class index.
        save: write the figure there as PNG too.
    """
    panels, c = _panels(predictions, len(labels)), len(class_names)
    side = 1.2 + 0.42 * c
    fig = Figure(figsize=(side * len(panels) + 0.5, side + 0.6), layout="constrained")
    for ax, (name, pred) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True
    ):
        counts = confusion_matrix(labels, pred, c)
        recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # rows sum to 1
        ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(counts):
            colour = "white" if recall[i, j] > 0.5 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=colour)
        accuracy = np.trace(counts) / max(1, counts.sum())
        ax.set_title(f"{name}: kNN top-1 {100 * accuracy:.1f}%" if name else f"{accuracy:.1%}")
        ax.set(xlabel="predicted", ylabel="true", xticks=range(c), yticks=range(c))
        ax.set_xticklabels(class_names, rotation=90, fontsize=7)
        ax.set_yticklabels(class_names, fontsize=7)
    return _maybe_save(fig, save)


def knn_predictions(
    sample: FeatureSample, protocol: EvalProtocol | None = None
) -> dict[str, np.ndarray]:
    """Each encoder's weighted-kNN class ``(Q,)`` for the queries, the bank as labelled set:
    the evaluation report's kNN (:class:`cpc.eval.knn.KNN`) of ``protocol`` (pass the run's,
    :func:`cpc.checkpoint.run_protocol`; default :class:`cpc.eval.EvalProtocol`'s: DINO's
    ``k=20``, ``T=0.07``, on features standardised with the bank's statistics). The features'
    pooling is the sample's (:func:`cpc.viz.sample.sample_features`)."""
    from cpc.eval.knn import KNN

    bank_labels, num_classes = torch.from_numpy(sample.bank_labels), len(sample.class_names)
    predictions = {}
    for name, query_f in sample.query_features.items():
        bank_f = torch.from_numpy(sample.bank_features[name])  # (N, F)
        knn = KNN(protocol).fit(bank_f, bank_labels, num_classes)
        predictions[name] = knn.predict(torch.from_numpy(query_f)).argmax(dim=1).numpy()  # (Q,)
    return predictions
