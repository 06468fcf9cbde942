"""Training curves from a run's log: loss, contrastive accuracy, MI bound, online kNN.

The InfoNCE mutual-information bound is ``log N - L``: ``I(x; c) >= log N - L_N`` (van den Oord
et al., 2018, Sec. 2.3; derived in their appendix, eq. 10).
:func:`read_metrics` reads a Lightning ``metrics.csv`` or TensorBoard events (``tensorboard``
is imported when called); :func:`find_metrics` finds them next to a checkpoint.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cpc.viz._common import _maybe_save

#: (suffix a metrics.csv column ends with, panel title), in panel order; kNN columns are matched
#: first (by ``knn`` in the name), so ``online/knn_acc`` is not taken for contrastive accuracy.
CURVE_PANELS = (
    ("loss", "loss"),
    ("acc", "contrastive accuracy"),
    ("mi_bound_nats", "MI lower bound (nats)"),
    ("knn_top1", "online kNN top-1"),
)


def read_metrics(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Logged scalars as ``{name: (steps, values)}``, blanks and NaNs dropped.

    Args:
        path: a Lightning ``CSVLogger`` ``metrics.csv``, or a TensorBoard event file or the
            folder holding it (LightningCLI's default logger when ``tensorboard`` is installed).
            In the CSV, Lightning writes one row per logging call and leaves the other columns
            empty, so every column keeps only its own rows; ``x`` is the ``step`` column.
    """
    path = Path(path)
    if path.suffix == ".csv" and path.is_file():
        return _read_csv(path)
    if path.exists() and (path.is_dir() or path.name.startswith("events.out.tfevents")):
        return _read_tensorboard(path)
    raise FileNotFoundError(
        f"no metrics at {path}: pass a CSVLogger metrics.csv or a TensorBoard event file/folder"
    )


def _read_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in rows[0] if rows else []:
        if name in ("step", "epoch"):
            continue
        points = [
            (float(row.get("step") or i), float(row[name]))
            for i, row in enumerate(rows)
            if row[name] not in ("", None) and math.isfinite(float(row[name]))
        ]
        if points:
            steps, values = np.array(points).T  # (P, 2) -> 2 x (P,)
            columns[name] = (steps, values)
    return columns


def _read_tensorboard(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in events.Tags()["scalars"]:
        points = [(e.step, e.value) for e in events.Scalars(tag) if math.isfinite(e.value)]
        if points and tag not in ("epoch", "step"):
            steps, values = np.array(points, dtype=np.float64).T  # (P, 2) -> 2 x (P,)
            columns[tag] = (steps, values)
    return columns


def find_metrics(ckpt_path: str | Path) -> Path | None:
    """The training log of the run that wrote ``ckpt_path``: a ``metrics.csv`` (preferred) or a
    TensorBoard event file in the checkpoint's folder or up to three folders above it."""
    folder = Path(ckpt_path).resolve().parent
    for d in [folder, *list(folder.parents)[:3]]:
        if (d / "metrics.csv").is_file():
            return d / "metrics.csv"
        if events := sorted(d.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
            return events[-1]
    return None


def curve_panel(column: str) -> str | None:
    """Which :data:`CURVE_PANELS` suffix a column belongs to (None: not plotted)."""
    name = column.removesuffix("_step").removesuffix("_epoch")
    if "knn" in name:
        return "knn_top1" if name.endswith(("top1", "acc")) else None
    return next((suffix for suffix, _ in CURVE_PANELS if name.endswith(suffix)), None)


def plot_training_curves(metrics: str | Path, save: str | Path | None = None) -> Figure:
    """Loss, contrastive accuracy, MI bound and (if logged) online kNN accuracy against step.

    Columns are matched by suffix (``train/loss``, ``val/cpc/acc``, ``train/mi_bound_nats``,
    ``val/knn_top1``, each with or without Lightning's ``_step``/``_epoch``); a panel appears
    only when some column matches it.

    Args:
        metrics: a Lightning ``metrics.csv`` or TensorBoard event file (see
            :func:`read_metrics`).
        save: write the figure there as PNG too.
    """
    columns = read_metrics(metrics)
    by_panel: dict[str, list[str]] = {suffix: [] for suffix, _ in CURVE_PANELS}
    for name in columns:
        if (suffix := curve_panel(name)) is not None:
            by_panel[suffix].append(name)
    shown = [(suffix, title) for suffix, title in CURVE_PANELS if by_panel[suffix]]
    if not shown:
        raise ValueError(
            f"{metrics} has no column ending in loss, acc, mi_bound_nats or knn_top1: "
            f"found {sorted(columns)}"
        )
    fig = Figure(figsize=(4 * len(shown), 3.2), layout="constrained")
    for ax, (suffix, title) in zip(
        fig.subplots(1, len(shown), squeeze=False)[0], shown, strict=True
    ):
        for name in by_panel[suffix]:
            steps, values = columns[name]
            ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, ms=3, label=name)
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=7)
    return _maybe_save(fig, save)
