"""What every figure module shares: the ``Panels`` input, array coercion and checks, PNG saving.

Every figure function takes one array or a ``{name: array}`` mapping and draws one panel per
name (:func:`_panels`); a lone array is the panel ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

Panels = np.ndarray | torch.Tensor | Mapping[str, np.ndarray | torch.Tensor]


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _maybe_save(fig: Figure, save: str | Path | None) -> Figure:
    if save is not None:
        save_figure(fig, save)
    return fig


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _panels(x: Panels, n: int) -> dict[str, np.ndarray]:
    """``{name: array}`` (a lone array is the panel ``""``), each with ``n`` rows."""
    panels = (
        {k: _as_numpy(v) for k, v in x.items()} if isinstance(x, Mapping) else {"": _as_numpy(x)}
    )
    if not panels:
        raise ValueError("got an empty mapping: pass an array or {name: array}")
    for name, array in panels.items():
        if len(array) != n:
            raise ValueError(f"panel {name!r} has {len(array)} rows but there are {n} labels")
    return panels


def _labels(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Integer labels as int64, checked to lie in ``[0, num_classes)``."""
    labels = _as_numpy(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (one per class name), "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)
