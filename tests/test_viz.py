import sys
import types

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

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


METRICS = """\
epoch,step,lr-AdamW,train/cpc/acc,train/cpc/mi_bound_nats,train/loss,val/cpc/acc,val/loss,val/knn_top1
0,0,0.001,0.1,0.5,3.0,,,
0,1,0.002,0.2,0.8,2.5,,,
0,1,,,,,0.25,2.6,
0,1,,,,,,,0.4
1,2,0.002,0.3,nan,2.0,,,
1,3,0.001,0.4,1.4,1.8,,,
1,3,,,,,0.45,1.9,0.55
"""


def test_training_curves_from_sparse_lightning_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(METRICS)
    fig = viz.plot_training_curves(path, save=tmp_path / "curves.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "loss",
        "contrastive accuracy",
        "MI lower bound (nats)",
        "online kNN top-1",
    ]
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert set(lines) == {
        "train/loss",
        "val/loss",
        "train/cpc/acc",
        "val/cpc/acc",
        "train/cpc/mi_bound_nats",
        "val/knn_top1",
    }
    np.testing.assert_array_equal(lines["val/loss"].get_xdata(), [1, 3])
    np.testing.assert_array_equal(lines["val/loss"].get_ydata(), [2.6, 1.9])
    np.testing.assert_array_equal(
        lines["train/cpc/mi_bound_nats"].get_xdata(), [0, 1, 3]
    )  # nan dropped
    np.testing.assert_array_equal(lines["val/knn_top1"].get_ydata(), [0.4, 0.55])
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_training_curves_without_knn_and_with_lightning_suffixes(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss_step,train/loss_epoch\n0,0,3.0,\n0,0,,2.9\n")
    fig = viz.plot_training_curves(path)
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    assert len(fig.axes[0].get_lines()) == 2


def test_training_curves_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics at"):
        viz.plot_training_curves(tmp_path / "missing.csv")
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,lr\n0,0,0.1\n")
    with pytest.raises(ValueError, match=r"found \['lr'\]"):
        viz.plot_training_curves(path)


def test_curve_panel_matching():
    assert viz.curve_panel("val/cpc/acc") == "acc"
    assert viz.curve_panel("online/knn_acc") == "knn_top1"
    assert viz.curve_panel("val/knn_top5") is None
    assert viz.curve_panel("train/images_per_sec") is None


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


def test_tensorboard_events_give_the_same_curves(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path / "version_0") as writer:
        for step, loss in enumerate([3.0, 2.5, 2.0]):
            writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("val/knn_top1", 0.5, 2)
        writer.add_scalar("epoch", 0, 2)
    columns = viz.read_metrics(tmp_path / "version_0")
    assert set(columns) == {"train/loss", "val/knn_top1"}
    np.testing.assert_array_equal(columns["train/loss"][0], [0, 1, 2])
    np.testing.assert_allclose(columns["train/loss"][1], [3.0, 2.5, 2.0])
    fig = viz.plot_training_curves(tmp_path / "version_0")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "online kNN top-1"]


def test_find_metrics_and_resolve_checkpoint(tmp_path):
    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    best, last = run / "checkpoints" / "epoch=0-step=9.ckpt", run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    best.write_bytes(b"")  # newer, but last.ckpt wins
    assert viz.resolve_checkpoint(tmp_path) == last
    assert viz.resolve_checkpoint(best) == best
    assert viz.find_metrics(last) is None
    (run / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    assert viz.find_metrics(last) == (run / "metrics.csv").resolve()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        viz.resolve_checkpoint(tmp_path / "lightning_logs" / "version_1")


def test_random_init_like_resets_weights_reproducibly():
    from cpc.models.encoder import ResNetEncoder

    encoder = ResNetEncoder(width=8)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)  # move every weight away from any initialisation
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b = viz.random_init_like(encoder, seed=5), viz.random_init_like(encoder, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is untouched
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key])  # the original is unchanged
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])  # same seed, same weights
        assert not torch.equal(a.state_dict()[key], value)  # every tensor was reset
    assert not a.training
