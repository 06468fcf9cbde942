"""Accuracy against labels per class (log axis): the label-efficiency curve of CPC v2
(Hénaff et al., 2020, Fig. 1), from a report's label budgets or the benchmark's table.

:func:`report_curves` reads a ``report.json`` made with ``report.label_budgets`` (``cpc fit``
or ``cpc eval --label_budgets``); :func:`label_efficiency_figure` draws any ``{name: {labels
per class: (mean, std)}}``, e.g. ``benchmarks/label_efficiency.py``'s rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cpc.eval.report_io import MODELS
from cpc.viz._common import _maybe_save

Curves = Mapping[str, Mapping[int, tuple[float, float]]]


def report_curves(report: Mapping[str, Any], method: str = "linear") -> dict[str, dict]:
    """``{model name: {labels per class: (test top-1 mean, std)}}`` of a report's budgets, for
    the kNN (``method="knn"``) or the linear probe; ``{}`` without budgets."""
    curves = {}
    for key, name in MODELS.items():
        budgets = report.get(key, {}).get("budgets") if isinstance(report.get(key), dict) else None
        if budgets:
            curves[name] = {
                int(b): (s[method]["top1"], s[method]["top1_std"]) for b, s in budgets.items()
            }
    return curves


def label_efficiency_figure(
    curves: Curves, title: str = "", save: str | Path | None = None
) -> Figure:
    """Test top-1 (%) against labels per class on a log axis, one line per name, error bars
    of one std over the subset draws."""
    if not curves:
        raise ValueError("no label budgets to draw: evaluate with report.label_budgets")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, points in curves.items():
        budgets = sorted(points)
        means = [100 * points[b][0] for b in budgets]
        stds = [100 * points[b][1] for b in budgets]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title or "label efficiency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _maybe_save(fig, save)


def run_label_figure(ckpt: Path) -> Figure | None:
    """The curve of the report next to checkpoint ``ckpt`` (``report.json`` or
    ``<name>.report.json``) when it has label budgets, else None."""
    for path in (ckpt.parent / "report.json", ckpt.with_suffix(".report.json")):
        if path.is_file():
            curves = report_curves(json.loads(path.read_text()))
            if curves:
                return label_efficiency_figure(curves, title=f"linear probe, {path.name}")
    return None
