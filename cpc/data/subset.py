"""Class-balanced, seeded subsets of a labelled split: the few labels of a label budget.

The same ``(labels, per_class, seed)`` always gives the same images, so a fine-tune
(:mod:`cpc.finetune`), the report's label budgets (:mod:`cpc.eval.label_efficiency`) and a
from-scratch reference all train on one subset when given one budget and draw.
"""

from __future__ import annotations

import torch


def labels_for_budget(labels: torch.Tensor, per_class: int | None, fraction: float | None) -> int:
    """Labels per class of a budget given as ``per_class`` or as a ``fraction`` of the split
    (rounded down, at least 1); raises one line when neither or both are given."""
    if (per_class is None) == (fraction is None):
        raise ValueError("give data.labels_per_class or data.label_fraction (one, not both)")
    if per_class is not None:
        return per_class
    if not 0 < fraction <= 1:
        raise ValueError(f"data.label_fraction must be in (0, 1], got {fraction}")
    counts = torch.bincount(labels[labels >= 0])
    return max(1, int(fraction * int(counts[counts > 0].min())))


def class_balanced_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Positions of ``per_class`` examples of every class in ``labels`` ``(N,)``, drawn
    without replacement by a generator seeded with ``seed``; sorted, ``(per_class * C,)``.

    Labels ``-1`` (unlabelled) are never drawn. Each class draws from its own seeded
    permutation, so a larger budget of the same seed holds a smaller one (10 per class is
    inside 100 per class): budgets are nested, as in CPC v2's label-efficiency curves.

    Raises:
        ValueError: ``per_class`` < 1, or more than the smallest class holds (naming it).
    """
    if per_class < 1:
        raise ValueError(f"data.labels_per_class must be >= 1, got {per_class}")
    classes = torch.unique(labels[labels >= 0])
    if len(classes) == 0:
        raise ValueError("the split has no labels: a label budget needs a labelled data module")
    chosen = []
    for c in classes.tolist():
        members = torch.nonzero(labels == c).flatten()  # (n_c,)
        if len(members) < per_class:
            raise ValueError(
                f"data.labels_per_class {per_class} is more than class {c} holds ({len(members)} "
                f"labelled images): use at most {len(members)}, or label_fraction"
            )
        generator = torch.Generator().manual_seed(seed * 1_000_003 + c)
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.cat(chosen).sort().values
