"""cpc.viz.embedding: the 2-D map of the features (UMAP, t-SNE, PCA)."""

import sys
import types

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection

from cpc import viz

CLASSES = ["tee", "bag", "boot"]


def blobs(n_per_class: int = 20, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separated Gaussian blobs: features (3n, dim), labels (3n,)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    centres = np.eye(dim)[:3] * 5
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def points_per_class(ax) -> dict[str, int]:
    return {
        c.get_label(): len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)
    }


@pytest.fixture
def no_umap(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError


def test_embedding_map_panels_points_legend_and_title(no_umap, tmp_path):
    features, labels = blobs()
    random = np.random.default_rng(1).normal(size=features.shape)
    fig = viz.embedding_map(
        {"trained": features, "random init": torch.from_numpy(random)},
        torch.from_numpy(labels),
        CLASSES,
        method="pca",
        max_points=45,
        save=tmp_path / "map.png",
    )
    assert len(fig.axes) == 2
    for ax in fig.axes:
        counts = points_per_class(ax)
        assert set(counts) == set(CLASSES) and sum(counts.values()) == 45
        assert "PCA" in ax.get_title()
    assert [t.get_text() for t in fig.legends[0].texts] == CLASSES
    assert (tmp_path / "map.png").stat().st_size > 0


def test_pca_map_separates_blobs():
    features, labels = blobs()
    coords, name = viz.embed_2d(features, "pca")
    assert name == "PCA" and coords.shape == (60, 2)
    centres = np.stack([coords[labels == c].mean(0) for c in range(3)])
    spread = max(coords[labels == c].std(0).max() for c in range(3))
    assert (
        np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)].min()
        > 3 * spread
    )


def test_auto_method_falls_back_when_umap_is_hidden(no_umap):
    features, _ = blobs(5)
    assert viz.embed_2d(features, "auto")[1] == "t-SNE"


def test_auto_method_uses_pca_without_umap_and_sklearn(no_umap, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    features, labels = blobs(5)
    fig = viz.embedding_map(features, labels, CLASSES)
    assert fig.axes[0].get_title() == "PCA"


def test_auto_method_prefers_umap_when_installed(monkeypatch):
    calls = []

    class FakeUMAP:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def fit_transform(self, x):
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    features, labels = blobs(4)
    fig = viz.embedding_map({"trained": features}, labels, CLASSES, seed=3)
    assert fig.axes[0].get_title().startswith("trained: UMAP")
    assert calls == [{"n_neighbors": 11, "random_state": 3}]  # n_neighbors < N = 12


def test_embedding_map_rejects_bad_labels_and_method():
    features, labels = blobs(4)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        viz.embedding_map(features, labels, CLASSES[:2], method="pca")
    with pytest.raises(ValueError, match="'umpa'"):
        viz.embed_2d(features, "umpa")
    with pytest.raises(ValueError, match="11 rows but there are 12"):
        viz.embedding_map(features[:11], labels, CLASSES, method="pca")
