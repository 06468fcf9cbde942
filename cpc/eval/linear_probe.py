"""Linear probe on frozen, precomputed features: the standard linear-evaluation protocol.

A single ``nn.Linear`` is trained with cross-entropy on the frozen encoder's features
(Oord et al., 2018, Sec. 3.1; Hénaff et al., 2019; DINO's ``eval_linear.py``). The features
are already in memory, so training is a plain loop of matmuls (no Trainer); the candidates of
a weight-decay sweep train together, one head each, in one pass over the batches.

Protocol of :func:`linear_probe`: one classifier per weight decay is trained on the train
split, the one with the best validation top-1 is selected, and only then is the test split
evaluated, once, with the selected classifier.

Shape letters: ``N`` examples, ``D`` feature dim, ``C`` classes, ``H`` heads.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cpc.eval.features import standardization

EVAL_CHUNK = 8192  # rows scored at a time


class LinearHeads(nn.Module):
    """``H`` ``nn.Linear`` heads on standardised features, one per weight decay.

    Standardisation (per-feature mean and std, buffers set by :meth:`fit_standardization`
    on training features only) makes one learning rate work whatever the scale of the
    features. It is an affine map, so each head is still linear in the raw features. Every
    head starts from the same initial weights.

    Shape:
        - input: ``(B, D)`` raw features
        - output: ``(B, H, C)`` logits of every head
    """

    def __init__(self, num_features: int, num_classes: int, num_heads: int = 1) -> None:
        super().__init__()
        if num_features < 1 or num_classes < 2:
            raise ValueError(
                f"need num_features >= 1 and num_classes >= 2, got {num_features} and {num_classes}"
            )
        if num_heads < 1:
            raise ValueError("weight_decays must hold at least one value (one head each)")
        head = nn.Linear(num_features, num_classes)
        self.heads = nn.ModuleList(copy.deepcopy(head) for _ in range(num_heads))  # same init
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Store the per-feature mean and std of ``features`` ``(N, D)``
        (:func:`cpc.eval.features.standardization`)."""
        mean, std = standardization(features, eps)  # (D,) each
        self.mean.copy_(mean)
        self.std.copy_(std)

    def head_logits(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Raw features ``(B, D)`` -> each head's logits, ``H`` tensors ``(B, C)``."""
        standardized = (features - self.mean) / self.std  # (B, D), once for every head
        return [head(standardized) for head in self.heads]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.head_logits(features), dim=1)  # (B, D) -> (B, H, C)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3),
    lr: float = 0.1,
    epochs: int = 10,
    batch_size: int = 1024,
    seed: int = 0,
    min_steps: int = 0,
    standardize_with: torch.Tensor | None = None,
) -> dict:
    """Sweep weight decay on val, then report the selected probe's test accuracy.

    One head per weight decay, trained together from the same seed (same initialisation and
    batch order), so heads differ only by the penalty and each ends as a run of its own would.
    SGD, momentum 0.9, ``lr`` cosine-annealed to 0 per step. The test split is evaluated once,
    after selection, with the selected head. Ties in val top-1 go to the earlier weight decay.

    Args:
        train_features, train_labels: the split the probes are trained on.
        val_features, val_labels: the split used to select the weight decay.
        test_features, test_labels: the split reported, touched only after selection.
        num_classes: number of classes ``C``; labels lie in ``[0, C)``.
        weight_decays: candidate L2 penalties (on weight and bias), at least one.
        lr: peak SGD learning rate.
        epochs: training epochs; more when ``min_steps`` asks for them.
        batch_size: training batch size.
        seed: seeds initialisation and shuffling. The caller's random state is left as it was.
        min_steps: train at least this many steps (a few labelled examples make short
            epochs: 100 examples are one step of batch 1024).
        standardize_with: features ``(M, D)`` whose statistics standardise every split, e.g.
            all unlabelled training images when only a few are labelled; default
            ``train_features``. Never the val or test features.

    Returns:
        ``{"top1", "top5"}``: test accuracy of the selected probe, fractions in ``[0, 1]``
        (``top5`` is top-``min(5, C)``); ``"val_top1"``: its validation top-1;
        ``"weight_decay"``: the selected penalty; ``"sweep"``: ``{weight_decay: val_top1}``.

    Raises:
        ValueError: on mismatched shapes, empty splits, non-finite features, labels outside
            ``[0, C)``, empty or repeated ``weight_decays``, or ``epochs``/``batch_size`` < 1.
    """
    splits = {
        "train": (train_features, train_labels),
        "val": (val_features, val_labels),
        "test": (test_features, test_labels),
    }
    for name, (features, labels) in splits.items():
        _check_split(name, features, labels, train_features.shape[1], num_classes)
    if len(weight_decays) == 0 or len(set(weight_decays)) != len(weight_decays):
        raise ValueError(f"weight_decays must be non-empty and distinct, got {weight_decays}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")

    with _seeded(seed):
        probe = LinearHeads(train_features.shape[1], num_classes, len(weight_decays))
        probe = probe.to(train_features.device)
        stats = train_features if standardize_with is None else standardize_with
        probe.fit_standardization(stats)
        steps_per_epoch = math.ceil(len(train_features) / batch_size)
        epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
        train(probe, train_features, train_labels, weight_decays, lr, epochs, batch_size)

    heads = range(len(weight_decays))
    val_top1 = [accuracy(probe, h, val_features, val_labels, num_classes)[0] for h in heads]
    sweep = dict(zip(weight_decays, val_top1, strict=True))
    # Model selection is over; the test split is used from here on, once.
    best = max(heads, key=val_top1.__getitem__)  # first of equal maxima
    top1, top5 = accuracy(probe, best, test_features, test_labels, num_classes)
    return {
        "top1": top1,
        "top5": top5,
        "val_top1": val_top1[best],
        "weight_decay": weight_decays[best],
        "sweep": sweep,
    }


def train(
    probe: LinearHeads,
    features: torch.Tensor,
    labels: torch.Tensor,
    weight_decays: Sequence[float],
    lr: float,
    epochs: int,
    batch_size: int,
) -> None:
    """SGD over shuffled batches of ``features`` ``(N, D)``, each head with its own weight
    decay; the loss is the sum of each head's mean cross-entropy, so each head gets exactly
    its own gradient."""
    groups = [
        {"params": head.parameters(), "weight_decay": wd}
        for head, wd in zip(probe.heads, weight_decays, strict=True)
    ]
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    total = epochs * math.ceil(len(features) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    labels = labels.long()
    for _ in range(epochs):
        order = torch.randperm(len(features), device=features.device)
        for start in range(0, len(features), batch_size):
            batch = order[start : start + batch_size]
            x = features[batch].float()  # (B, D)
            loss = sum(F.cross_entropy(logits, labels[batch]) for logits in probe.head_logits(x))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()


@torch.no_grad()
def accuracy(
    probe: LinearHeads,
    head: int,
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
) -> tuple[float, float]:
    """Top-1 and top-``min(5, C)`` accuracy of one head on ``features`` ``(N, D)``."""
    k = min(5, num_classes)
    correct1 = correct5 = 0
    for start in range(0, len(features), EVAL_CHUNK):
        x = features[start : start + EVAL_CHUNK].float()
        y = labels[start : start + EVAL_CHUNK].to(x.device)
        top = probe.head_logits(x)[head].topk(k, dim=1).indices  # (B, k)
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=1).sum())
    return correct1 / len(features), correct5 / len(features)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The global generators (torch and the current CUDA device's, numpy, Python) seeded with
    ``seed``, and set back to the caller's state afterwards: the probe is reproducible, and
    calling it shifts no one else's draws."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (the global generator, as seed_everything)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)


def _check_split(
    name: str, features: torch.Tensor, labels: torch.Tensor, dim: int, num_classes: int
) -> None:
    """Raise a one-line ValueError naming the split and the bad value."""
    if features.ndim != 2 or features.shape[1] != dim:
        raise ValueError(
            f"{name}_features must have shape (N, {dim}) like train_features, "
            f"got {tuple(features.shape)}"
        )
    if features.shape[0] == 0:
        raise ValueError(f"{name} split is empty")
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"{name}_labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}"
        )
    if not torch.isfinite(features).all():
        raise ValueError(f"{name}_features contains NaN or inf values")
    if labels.is_floating_point() or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"{name}_labels must be integers in [0, {num_classes}), got dtype {labels.dtype} "
            f"and values in [{labels.min().item()}, {labels.max().item()}]"
        )
