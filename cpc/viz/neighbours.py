"""Nearest neighbours: the query | neighbours image grid.

:func:`neighbour_grid` draws any images it is given; :func:`neighbours_figure` takes the
neighbours of :meth:`cpc.eval.knn.KNN.neighbours` (the search behind the report's kNN) in a
:class:`~cpc.viz.sample.FeatureSample`'s train bank and draws one grid per encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure

from cpc.viz._common import Panels, _as_numpy, _maybe_save, _panels
from cpc.viz.sample import FeatureSample

if TYPE_CHECKING:  # imports Lightning; neighbours_figure imports the eval package when called
    from cpc.eval.protocol import EvalProtocol

MISMATCH_COLOUR = "tab:red"


def pick_queries(labels: np.ndarray | torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices taking the classes in turn (one image of each before a second of any)."""
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = np.zeros(len(labels), dtype=np.int64)  # how many earlier picks share the class
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    return order[np.lexsort((labels[order], rank[order]))][:n]


def neighbour_grid(
    query_images: np.ndarray | torch.Tensor,
    neighbour_images: Panels,
    query_labels: np.ndarray | torch.Tensor,
    neighbour_labels: Panels,
    class_names: Sequence[str] | None = None,
    save: str | Path | None = None,
) -> Figure:
    """One row per query: the query, then its neighbours; other-class neighbours framed red.

    Each panel is one montage image (one axes, not one per image: fast to lay out and save),
    with a class name above every image, red where it differs from the query's.

    Args:
        query_images: ``(Q, C, H, W)`` uint8, or float in [0, 1].
        neighbour_images: ``(Q, k, C, H, W)``, or ``{name: (Q, k, C, H, W)}`` for one grid per
            encoder, side by side.
        query_labels: ``(Q,)``.
        neighbour_labels: ``(Q, k)``, or ``{name: (Q, k)}`` with the names of
            ``neighbour_images``.
        class_names: names shown above each image (default: the class index).
        save: write the figure there as PNG too.
    """
    from matplotlib.patches import Rectangle

    queries, query_labels = _unit_rgb(query_images), _as_numpy(query_labels)
    images = {n: _unit_rgb(x) for n, x in _panels(neighbour_images, len(queries)).items()}
    labels = _panels(neighbour_labels, len(queries))
    if images.keys() != labels.keys():
        raise ValueError(f"neighbour_images has panels {list(images)}, labels {list(labels)}")
    (q, k), (h, w) = labels[next(iter(labels))].shape, queries.shape[1:3]
    pad, band, gap = max(2, w // 10), max(6, h // 3), w // 2  # pixels: border, label, gap
    cell_w, cell_h = w + pad, h + band + pad
    canvas_w = pad + (k + 1) * cell_w + gap
    fig = Figure(
        figsize=(len(images) * 0.75 * canvas_w / cell_w, 0.75 * q * cell_h / cell_w + 0.4),
        layout="constrained",
    )
    for ax, name in zip(fig.subplots(1, len(images), squeeze=False)[0], images, strict=True):
        canvas = np.ones((q * cell_h, canvas_w, 3), dtype=np.float32)  # white
        for row in range(q):
            y = row * cell_h + band
            cells = [(queries[row], query_labels[row])]
            cells += [(images[name][row, j], labels[name][row, j]) for j in range(k)]
            for j, (image, label) in enumerate(cells):
                x = pad + j * cell_w + (gap if j else 0)
                canvas[y : y + h, x : x + w] = image
                colour = "black" if label == query_labels[row] else MISMATCH_COLOUR
                ax.text(x + w / 2, y - 1, _name(class_names, label), color=colour, fontsize=6,
                        ha="center", va="bottom")  # fmt: skip
                if colour != "black":
                    ax.add_patch(Rectangle((x - 1.5, y - 1.5), w + 2, h + 2, fill=False,
                                           edgecolor=colour, linewidth=1.5))  # fmt: skip
        ax.imshow(canvas, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{name}: query | top-{k} train neighbours" if name else "query | neighbours")
    return _maybe_save(fig, save)


def _unit_rgb(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 or [0, 1] images ``(..., C, H, W)``, C in {1, 3} -> float32 ``(..., H, W, 3)``."""
    x = _as_numpy(images)
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    x = np.moveaxis(x, -3, -1)  # (..., C, H, W) -> (..., H, W, C)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x  # (..., H, W, 3)


def _name(class_names: Sequence[str] | None, label: int) -> str:
    return str(label) if class_names is None else class_names[int(label)]


def neighbours_figure(
    sample: FeatureSample,
    queries: int = 8,
    k: int = 8,
    seed: int = 0,
    protocol: EvalProtocol | None = None,
    save: str | Path | None = None,
) -> Figure:
    """:func:`neighbour_grid` for ``queries`` test images (classes in turn), one grid per
    encoder: each query's ``k`` nearest train-bank images by the report's kNN search
    (:meth:`cpc.eval.knn.KNN.neighbours`: cosine, on features projected and standardised as
    ``protocol``'s ``knn_pca`` and ``knn_standardize`` say; pass the run's,
    :func:`cpc.checkpoint.run_protocol`; default :class:`cpc.eval.EvalProtocol`'s)."""
    from cpc.eval.knn import KNN

    picked = pick_queries(sample.query_labels, queries, seed)  # (q,)
    images, labels = {}, {}
    for name, query_f in sample.query_features.items():
        bank_f = torch.from_numpy(sample.bank_features[name])  # (N, F)
        query_f = torch.from_numpy(query_f[picked])  # (q, F)
        _, idx = KNN(protocol).fit(bank_f).neighbours(query_f, k)  # (q, k)
        images[name] = sample.bank_images[idx]  # (q, k, C, H, W)
        labels[name] = sample.bank_labels[idx.numpy()]  # (q, k)
    return neighbour_grid(
        sample.query_images[torch.from_numpy(picked)],
        images,
        sample.query_labels[picked],
        labels,
        sample.class_names,
        save,
    )
