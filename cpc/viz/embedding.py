"""The features in 2-D, coloured by class: :func:`embed_2d` and the figure :func:`embedding_map`.

UMAP (McInnes et al., 2018) when ``umap-learn`` is installed, else t-SNE (van der Maaten &
Hinton, 2008) from scikit-learn, else PCA (numpy); both libraries are imported when called.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from cpc.viz._common import Panels, _labels, _maybe_save, _panels

Method = Literal["auto", "umap", "tsne", "pca"]


def embed_2d(
    features: np.ndarray, method: Method = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """Project L2-normalised features to 2-D (their geometry is the kNN's: cosine).

    Args:
        features: ``(N, F)`` with ``N >= 3``.
        method: ``"umap"``, ``"tsne"``, ``"pca"`` or ``"auto"`` (the first one installed).
        seed: random state of UMAP / t-SNE.

    Returns:
        ``(N, 2)`` coordinates and the method's display name (``"UMAP"``, ``"t-SNE"``,
        ``"PCA"``).
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"features must be (N, F) with N >= 3, got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    method = _auto_method() if method == "auto" else method
    if method == "umap":
        import umap

        with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state"
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed)
            return reducer.fit_transform(x), "UMAP"
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed)
        return tsne.fit_transform(x), "t-SNE"
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, F), F)
        coords = centred @ vt[:2].T  # (N, F) @ (F, <=2) -> (N, <=2)
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))), "PCA"
    raise ValueError(f"method must be 'auto', 'umap', 'tsne' or 'pca', got {method!r}")


def _auto_method() -> str:
    for module, method in (("umap", "umap"), ("sklearn.manifold", "tsne")):
        try:
            __import__(module)
        except ImportError:
            continue
        return method
    return "pca"


def embedding_map(
    features: Panels,
    labels: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    method: Method = "auto",
    max_points: int = 2000,
    seed: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """Scatter of the features in 2-D, one colour per class, a legend of class names.

    Args:
        features: ``(Q, F)``, or ``{name: (Q, F)}`` for one panel per encoder (same images).
        labels: ``(Q,)`` integer classes in ``[0, len(class_names))``.
        class_names: name of each class index.
        method: see :func:`embed_2d`; the title names the one used.
        max_points: a seeded random subset of at most this many points is drawn (UMAP and
            t-SNE are slow on a CPU past a few thousand).
        seed: subset and projection seed.
        save: write the figure there as PNG too.
    """
    panels, labels = _panels(features, len(labels)), _labels(labels, len(class_names))
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:max_points])
    fig = Figure(figsize=(5 * len(panels) + 2, 5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = _class_colours(len(class_names))
    for ax, (name, panel) in zip(axes, panels.items(), strict=True):
        coords, shown = embed_2d(panel[keep], method, seed)
        for c in np.unique(labels[keep]):
            xy = coords[labels[keep] == c]
            ax.scatter(xy[:, 0], xy[:, 1], s=5, color=colours[c], label=class_names[c])
        ax.set_title(f"{name}: {shown} of {len(keep)} test images" if name else shown)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", markerscale=3)
    return _maybe_save(fig, save)


def _class_colours(num_classes: int) -> list:
    from matplotlib import colormaps

    name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "turbo"
    cmap = colormaps[name]
    if name == "turbo":
        return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]
    return [cmap(i) for i in range(num_classes)]
