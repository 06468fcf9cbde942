"""The encoder's compact projection applied to extracted features.

The compact feature ``encoder(images)`` is the pooled grid passed through ``encoder.compact``:
a :class:`~cpc.models.projection.WhitenedPCA` fitted without labels, or the identity when the
encoder has none. An unfitted projection (a random-init copy's) is fitted on pooled grids
already extracted, so these helpers say whether it can be applied during extraction and apply
it to the stored rows afterwards. What it is fitted on:
:func:`cpc.eval.features.compact_fit_features`.
"""

from __future__ import annotations

import torch
from torch import nn


def projection_ready(encoder: nn.Module) -> bool:
    """Whether ``encoder.compact`` can be applied: its compact projection is fitted, or it has
    none (then ``compact`` is the identity)."""
    projection = getattr(encoder, "compact_projection", None)
    return projection is None or projection.fitted


def project_rows(encoder: nn.Module, pooled: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """``encoder.compact`` of pooled grids ``(N, F)`` (on the CPU, memory-mapped or not),
    ``chunk`` rows at a time on the projection's device: ``(N, compact_features)`` on the CPU,
    each row as the projection of its batch gives it."""
    projection = getattr(encoder, "compact_projection", None)
    if projection is None:
        return pooled
    device = projection.basis.device
    with torch.no_grad():
        return torch.cat([encoder.compact(rows.to(device)).cpu() for rows in pooled.split(chunk)])
