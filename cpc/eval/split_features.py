"""The features of every evaluation split, one pass over each, with compact features whose
projection is fitted on the ``"train"`` split as ``cpc fit`` fits it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cpc.eval.compact import project_rows, projection_ready
from cpc.eval.features import compact_fit_rows, extract_feature_sets
from cpc.eval.protocol import EvalProtocol


def extract_splits(
    encoders: Mapping[str, nn.Module],
    loaders: Mapping[str, Any],
    protocol: EvalProtocol,
    device: torch.device | str | None,
    progress: bool,
    names: str,
    pixels: bool = False,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``({split: {model: (N, F)}}, {split: labels (N,)})``, one pass over each split; the
    progress bars read ``features <split>: <names>``.

    With ``protocol.compact``, also ``{model}_compact``: ``encoder(images)``, projected batch
    by batch during the pass. A model whose compact projection is not fitted yet (a random-init
    copy, a checkpoint other than ``last.ckpt``) is copied, and the copy's projection is fitted
    without labels on the pooled grids of the ``"train"`` split's images that ``cpc fit`` fits
    on (the first split; :func:`cpc.eval.features.compact_fit_rows`); that split is then
    projected, and the later ones batch by batch. The given modules are never changed.
    """
    if protocol.compact:  # fit unfitted projections on copies, not on the caller's modules
        encoders = {
            name: model if projection_ready(model) else copy.deepcopy(model)
            for name, model in encoders.items()
        }
    features, labels = {}, {}
    for split, loader in loaders.items():
        unfitted = [name for name, m in encoders.items() if not projection_ready(m)]
        if protocol.compact and unfitted and split != "train":
            raise ValueError(
                f"the compact projection is fitted on 'train', read first, not {split!r}"
            )
        features[split], labels[split] = extract_feature_sets(
            encoders,
            loader,
            protocol.pooling,
            device,
            progress,
            pixels=pixels,
            compact=protocol.compact,
            project=True,
            memmap=protocol.memmap,
            desc=f"features {split}: {names}",
        )
        for name in unfitted if protocol.compact else ():  # fit on "train", then project it
            pooled = features[split][f"{name}_compact"]  # (N, F)
            encoders[name].fit_compact(pooled[compact_fit_rows(len(pooled))])  # as cpc fit
            features[split][f"{name}_compact"] = project_rows(encoders[name], pooled)
    return features, labels
