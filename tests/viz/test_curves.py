"""cpc.viz.curves: training curves from metrics.csv or TensorBoard events."""

import numpy as np
import pytest

from cpc import viz

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
