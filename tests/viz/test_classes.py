"""cpc.viz.classes: confusion matrices and the per-class kNN table."""

import numpy as np
import pytest
import torch

from cpc import viz

CLASSES = ["tee", "bag", "boot"]


def test_confusion_matrix_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 2, 0, 2])
    m = viz.confusion_matrix(torch.from_numpy(labels), preds, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m.sum() == len(labels)
    with pytest.raises(ValueError, match="integers"):
        viz.confusion_matrix(labels.astype(float), preds, 3)


def test_per_class_table_matches_hand_count():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    trained = np.array([0, 0, 1, 1, 1, 2, 2, 2, 0])
    random = np.array([1, 0, 2, 0, 0, 2, 1, 1, 1])
    rows = viz.per_class_knn_table(labels, {"trained": trained, "random init": random}, CLASSES)
    assert [r["class"] for r in rows] == [*CLASSES, "all"]
    assert [r["n"] for r in rows] == [3, 2, 4, 9]
    assert [r["trained"] for r in rows] == pytest.approx([2 / 3, 1.0, 3 / 4, 7 / 9])
    assert [r["random init"] for r in rows] == pytest.approx([1 / 3, 0.0, 1 / 4, 2 / 9])
    text = viz.format_table(rows)
    assert text.splitlines()[0].split() == ["class", "n", "trained", "random", "init"]
    assert "77.8%" in text.splitlines()[-1]


def test_per_class_table_single_array_and_empty_class():
    rows = viz.per_class_knn_table(np.array([0, 0]), np.array([0, 1]), ["a", "b"])
    assert rows[0]["accuracy"] == 0.5 and np.isnan(rows[1]["accuracy"])
    assert "-" in viz.format_table(rows).splitlines()[3].split()


def test_confusion_matrix_figure_shows_counts_summing_to_n(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = {"trained": labels, "random init": np.array([1, 1, 1, 0, 0, 2])}
    fig = viz.confusion_matrix_figure(labels, preds, CLASSES, save=tmp_path / "cm.png")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert sum(int(t.get_text()) for t in ax.texts) == len(labels)
        assert len(ax.texts) == 9
    assert "100.0%" in fig.axes[0].get_title() and "33.3%" in fig.axes[1].get_title()
    assert (tmp_path / "cm.png").stat().st_size > 0
