"""cpc.viz.neighbours: query picking and the query | neighbours grid."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from cpc import viz

CLASSES = ["tee", "bag", "boot"]


def test_pick_queries_takes_classes_in_turn():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    for seed in range(3):
        picked = viz.pick_queries(labels, 6, seed=seed)
        # a round over the classes with images left, smallest class index first in a round
        assert labels[picked].tolist() == [0, 1, 2, 0, 1, 0]
        assert len(set(picked.tolist())) == 6
    assert not np.array_equal(viz.pick_queries(labels, 6, 0), viz.pick_queries(labels, 6, 1))


def test_neighbour_grid_marks_other_class_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    q, k = 3, 4
    queries = rng.integers(0, 255, (q, 1, 6, 6), dtype=np.uint8)
    images = {
        "trained": rng.random((q, k, 1, 6, 6)),
        "random init": torch.from_numpy(rng.random((q, k, 1, 6, 6))),
    }
    query_labels = np.array([0, 1, 2])
    labels = {
        "trained": np.array([[0, 0, 0, 1], [1, 1, 1, 1], [2, 0, 2, 2]]),
        "random init": np.array([[1, 2, 0, 1], [0, 0, 1, 2], [2, 2, 2, 2]]),
    }
    fig = viz.neighbour_grid(
        queries, images, query_labels, labels, CLASSES, save=tmp_path / "n.png"
    )
    assert len(fig.axes) == 2
    red = to_rgba(viz.MISMATCH_COLOUR)
    for ax, name in zip(fig.axes, labels, strict=True):
        assert ax.get_title().startswith(name)
        expected = [CLASSES[c] for row in range(q) for c in [query_labels[row], *labels[name][row]]]
        assert [t.get_text() for t in ax.texts] == expected  # row by row, query first
        mismatches = int((labels[name] != query_labels[:, None]).sum())
        assert sum(to_rgba(t.get_color()) == red for t in ax.texts) == mismatches
        assert [to_rgba(p.get_edgecolor()) for p in ax.patches] == [red] * mismatches
        # the first query's pixels sit in the montage, grey -> equal RGB channels
        canvas = ax.images[0].get_array()
        hits = [
            (y, x)
            for y in range(canvas.shape[0] - 5)
            for x in range(canvas.shape[1] - 5)
            if np.allclose(canvas[y : y + 6, x : x + 6, 0], queries[0, 0] / 255)
        ]
        assert len(hits) == 1
    assert sum(len(ax.patches) for ax in fig.axes) == 2 + 6
    assert (tmp_path / "n.png").stat().st_size > 0


def test_neighbour_grid_rejects_mismatched_panels():
    queries, images = np.zeros((2, 1, 4, 4)), {"a": np.zeros((2, 3, 1, 4, 4))}
    with pytest.raises(ValueError, match="panels"):
        viz.neighbour_grid(queries, images, np.zeros(2, int), {"b": np.zeros((2, 3), int)})
