import json

import pytest

from cpc.viz import label_efficiency_figure, report_curves
from cpc.viz.labels import run_label_figure

SCORES = {"top1": 0.8, "top1_std": 0.01, "val_top1": 0.79, "draws": [0.79, 0.81]}
ROW = {"knn": {}, "linear": {}, "budgets": {"10": {"knn": SCORES, "linear": SCORES}}}


def test_report_curves_read_each_model_and_budget():
    report = {
        "encoder": ROW,
        "pixels": {**ROW, "budgets": {"100": {"knn": SCORES, "linear": SCORES}}},
    }
    assert report_curves(report) == {"encoder": {10: (0.8, 0.01)}, "pixels": {100: (0.8, 0.01)}}
    assert report_curves({"encoder": {"knn": {}, "linear": {}}}) == {}


def test_the_figure_has_a_log_axis_and_a_line_per_curve(tmp_path):
    curves = {"CPC": {10: (0.75, 0.02), 100: (0.85, 0.01)}, "scratch": {10: (0.6, 0.03)}}
    fig = label_efficiency_figure(curves, save=tmp_path / "le.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_legend().get_texts()) == 2
    assert (tmp_path / "le.png").stat().st_size > 0
    with pytest.raises(ValueError, match="report.label_budgets"):
        label_efficiency_figure({})


def test_a_run_folder_report_with_budgets_gets_a_figure(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    assert run_label_figure(ckpt) is None
    (tmp_path / "report.json").write_text(json.dumps({"encoder": ROW}))
    assert run_label_figure(ckpt) is not None
