"""The evaluation report on screen and on disk: an aligned table and an atomic JSON file.

A report (:func:`cpc.eval.report.evaluate`) maps each compared model (:data:`MODELS`) to its
kNN and linear-probe accuracies, ``{"encoder": {"knn": {"top1": ..., "top5": ...},
"linear": {...}}, ..., "meta": {...}}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: report keys of the compared features, in table order, and their row names: each model with
#: the protocol's pooling, and (``protocol.compact``) its compact feature, ``encoder(images)``
MODELS = {
    "encoder": "encoder",
    "encoder_compact": "encoder compact",
    "random_init": "random-init",
    "random_init_compact": "random-init compact",
    "pixels": "pixels",
}


def format_report(report: Mapping[str, Any]) -> str:
    """A small aligned table of accuracies in %: one row per model, kNN and linear top-1/5."""
    columns = [("knn", "top1"), ("knn", "top5"), ("linear", "top1"), ("linear", "top5")]
    header = f"{'features':<20}" + "".join(f"{f'{m} {t}':>13}" for m, t in columns)
    lines = [header, "-" * len(header)]
    for key, row in MODELS.items():
        if key in report:
            cells = "".join(f"{100 * report[key][m][t]:>13.2f}" for m, t in columns)
            lines.append(f"{row:<20}{cells}")
    lines += format_budgets(report)
    meta = report.get("meta", {})
    if meta:
        cached = ", baselines cached" if meta.get("baselines_cached") else ""
        lines.append(
            f"k={meta.get('k')} T={meta.get('temperature')} pooling={meta.get('pooling')} "
            f"standardized={meta.get('knn_standardize')} knn_pca={meta.get('knn_pca')} "
            f"feature_dim={meta.get('feature_dim')} compact_dim={meta.get('compact_dim')} "
            f"reported on {meta.get('test_split')!r} "
            f"({meta.get('seconds')} s{cached})"
        )
    return "\n".join(lines)


def format_budgets(report: Mapping[str, Any]) -> list[str]:
    """The few-label rows (``report[model]["budgets"]``): test top-1 in %, mean ± std over
    draws, kNN and linear probe, one line per budget and model; ``[]`` without budgets."""
    rows = [(key, name) for key, name in MODELS.items() if "budgets" in report.get(key, {})]
    if not rows:
        return []
    header = f"{'labels/class':<14}{'features':<20}{'knn top1':>16}{'linear top1':>16}"
    lines = ["", header, "-" * len(header)]
    budgets = report[rows[0][0]]["budgets"]
    for budget in budgets:
        for key, name in rows:
            scores = report[key]["budgets"][budget]
            cells = "".join(f"{mean_std(scores[m]):>16}" for m in ("knn", "linear"))
            lines.append(f"{budget:<14}{name:<20}{cells}")
    return lines


def mean_std(scores: Mapping[str, float]) -> str:
    """``{"top1": 0.8512, "top1_std": 0.0031}`` -> ``"85.12 ± 0.31"``."""
    return f"{100 * scores['top1']:.2f} ± {100 * scores['top1_std']:.2f}"


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``report`` as JSON atomically: a temp file in the same folder, then ``os.replace``.

    A reader never sees a half-written file, and a crash leaves any previous report intact.
    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # readable like any other output (mkstemp gives 0600)
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(report), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(value: Any) -> Any:
    """Tensors -> numbers, tuples -> lists, dict keys -> strings (recursively)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
