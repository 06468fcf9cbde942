"""The report's two baselines: the same architecture freshly initialised (what the architecture
alone gives) and raw pixels (what no learning gives); their rows do not depend on training, so
they are cached across runs (:mod:`cpc.eval.baseline_cache`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cpc.eval.baseline_cache import BaselineCache, architecture, fingerprint
from cpc.eval.features import bf16_features, device_of
from cpc.eval.protocol import EvalData
from cpc.eval.report_io import jsonable
from cpc.eval.scorer import Scorer
from cpc.eval.split_features import extract_splits


def random_init(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``encoder`` with every submodule that has ``reset_parameters`` re-initialised.

    Seeded, and without disturbing the global RNG, so the baseline is the same in every report.
    """
    fresh = copy.deepcopy(encoder)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh


def baseline_rows(
    encoder: nn.Module,
    splits: EvalData,
    loaders: Mapping[str, Any],
    scorer: Scorer,
    device: torch.device | str | None,
    progress: bool,
    cache: bool,
) -> tuple[dict[str, Any], bool]:
    """The rows of the random-init encoder (and its compact feature) and of raw pixels, plus
    ``"pixel_dim"``; from the cache when an earlier report stored them. Returns
    ``(rows, from_cache)``."""
    protocol = scorer.protocol
    fresh = random_init(encoder, protocol.seed)
    device = torch.device(device) if device is not None else device_of(encoder)
    store = BaselineCache() if cache else None
    key = None
    if store is not None:
        key = BaselineCache.key(
            data={split: fingerprint(loader) for split, loader in loaders.items()},
            datamodule=f"{type(splits).__module__}.{type(splits).__qualname__}",
            architecture=architecture(fresh),
            protocol=protocol.as_dict(),
            probe_kwargs={name: jsonable(v) for name, v in scorer.probe_kwargs.items()},
            test_split=scorer.test_split,
            num_classes=splits.num_classes,
            device=device.type,
            bf16=bf16_features(device),
        )
        rows = store.load(key)
        if rows is not None:
            for row in (r for r in rows.values() if isinstance(r, dict)):  # JSON made keys str
                row["linear"]["sweep"] = {float(k): v for k, v in row["linear"]["sweep"].items()}
            return rows, True
    names = "random-init" + (" + compact" if protocol.compact else "") + " + pixels"
    features, labels = extract_splits(
        {"random_init": fresh}, loaders, protocol, device, progress, names, pixels=True
    )
    rows = scorer.rows(features, labels)
    rows["pixel_dim"] = features["train"]["pixels"].shape[1]
    if store is not None:
        store.save(key, rows)
    return rows, False
