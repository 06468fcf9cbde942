"""Classification heads of the pretext tasks."""

from __future__ import annotations

from torch import nn


def mlp_head(in_features: int, out_features: int, hidden: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear`` through ``hidden`` units, or one ``Linear`` if ``hidden`` is 0.

    A hidden layer lets the head, not the encoder's last layer, specialise in the pretext
    task (Gidaris et al., 2018; Doersch et al., 2015 put fc layers on the pair).

    Shape:
        ``(N, in_features) -> (N, out_features)``.
    """
    if hidden < 0:
        raise ValueError(f"hidden must be >= 0 (0: a linear head), got {hidden}")
    if hidden == 0:
        return nn.Sequential(nn.Linear(in_features, out_features))
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
