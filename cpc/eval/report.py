"""End-of-training evaluation of a frozen encoder: kNN and linear probe against two baselines.

Protocol (the standard self-supervised evaluation; DINO's ``eval_knn.py``/``eval_linear.py``,
CPC's linear evaluation in van den Oord et al., 2018 and Hénaff et al., 2019):

- features of the eval ``"train"``, ``"val"`` and ``"test"`` splits are extracted once per
  model and split (:func:`cpc.eval.features.extract_feature_sets`), one model at a time;
- **kNN**: memory bank = ``"train"``, queries = ``"test"`` (:class:`cpc.eval.knn.KNN`),
  on features standardised with the bank's statistics by default (as the probe's are);
- **linear probe**: fit on ``"train"``, weight decay selected on ``"val"``, ``"test"`` evaluated
  once with the selected probe (:func:`cpc.eval.linear_probe.linear_probe`).

The same numbers are reported for two baselines, which say what pretraining bought:
``random_init`` (the same architecture, freshly initialised: what the architecture alone gives)
and ``pixels`` (flattened raw pixels: what no learning gives). They do not depend on training,
so their rows are cached across runs with the same data, architecture and protocol
(:mod:`cpc.eval.baseline_cache`).

When the data module has no test split (an image folder without ``test_root``), ``"val"``
stands in for it and the probe's weight decay is fixed to the first candidate, so no
selection touches the split that is reported (``meta["test_split"] == "val"``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from cpc.eval.baselines import baseline_rows

# re-exported: part of this module's API too (benchmarks and user code import them from here)
from cpc.eval.baselines import random_init as random_init
from cpc.eval.protocol import EvalData, EvalProtocol
from cpc.eval.report_io import MODELS, jsonable
from cpc.eval.report_io import format_report as format_report
from cpc.eval.report_io import write_report as write_report
from cpc.eval.scorer import Scorer
from cpc.eval.split_features import extract_splits

log = logging.getLogger(__name__)


def evaluate(
    encoder: nn.Module,
    splits: EvalData,
    protocol: EvalProtocol | None = None,
    *,
    baselines: bool = True,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_path: str | None = None,
    cache: bool = True,
) -> dict[str, Any]:
    """kNN and linear-probe accuracy of a frozen encoder (and baselines) on a data module.

    Args:
        encoder: has ``forward_features`` (images in [0, 1] -> ``(B, D, Gh, Gw)``); left
            unchanged: its mode and device are restored, and a compact projection it has not
            fitted yet is fitted on a copy (:func:`extract_splits`).
        splits: a data module with ``eval_dataloader(split)`` and ``num_classes``
            (:class:`cpc.eval.protocol.EvalData`, e.g. a :class:`cpc.data.ImageDataModule`).
        protocol: k, temperature, pooling, standardisation, probe settings and seed; default
            ``EvalProtocol()``.
        baselines: also evaluate the random-init encoder and raw pixels.
        device: where features are extracted; default the encoder's device.
        progress: show progress bars during feature extraction.
        checkpoint_path: recorded in the metadata.
        cache: reuse the baselines' rows computed by an earlier report with the same data,
            architecture and protocol, and store new ones (:mod:`cpc.eval.baseline_cache`:
            ``$CPC_CACHE``, default ``~/.cache/cpc``).

    Returns:
        ``{"encoder": result, "random_init": result, "pixels": result, "meta": {...}}`` (the
        baselines only when ``baselines``), where ``result = {"knn": {"top1", "top5"},
        "linear": {"top1", "top5", "val_top1", "weight_decay", "sweep"}}``, accuracies as
        fractions; ``meta`` holds the data module class, checkpoint path, feature dims, every
        protocol field, split sizes, which split was reported, whether the baselines came
        from the cache, and the seconds taken.

    Features are extracted one model at a time (the encoder's, then the baselines' when not
    cached), each scored and dropped before the next: peak memory is one model's features.
    """
    start = time.perf_counter()
    protocol = protocol or EvalProtocol()
    check_eval_data("evaluate", splits)
    probe_kwargs = {"seed": protocol.seed, **(protocol.probe_kwargs or {})}
    loaders = {split: splits.eval_dataloader(split) for split in ("train", "val")}
    test_split = "test"
    try:
        loaders["test"] = splits.eval_dataloader("test")
    except ValueError as err:  # e.g. ImageFolderDataModule without test_root
        test_split = "val"
        log.warning("no test split (%s): reporting on val with a fixed weight decay", err)
        probe_kwargs["weight_decays"] = tuple(probe_kwargs.get("weight_decays", (0.0,)))[:1]
    if protocol.compact and not callable(getattr(encoder, "pool", None)):
        raise ValueError(
            f"{type(encoder).__name__} has no pool(grid) giving its compact feature: "
            "set report.compact false"
        )
    scorer = Scorer(splits.num_classes, protocol, probe_kwargs, test_split)
    names = "encoder" + (" + compact" if protocol.compact else "")
    features, labels = extract_splits(
        {"encoder": encoder}, loaders, protocol, device, progress, names=names
    )
    dims = {name: f.shape[1] for name, f in features["train"].items()}
    report: dict[str, Any] = scorer.rows(features, labels)
    del features  # one model's features in memory at a time
    cached = False
    if baselines:
        base, cached = baseline_rows(encoder, splits, loaders, scorer, device, progress, cache)
        dims["pixels"] = base.pop("pixel_dim")
        report.update(base)
    report = {name: report[name] for name in MODELS if name in report}  # table order
    report["meta"] = {
        "datamodule": f"{type(splits).__module__}.{type(splits).__qualname__}",
        "checkpoint": None if checkpoint_path is None else str(checkpoint_path),
        "feature_dim": dims["encoder"],
        "compact_dim": dims.get("encoder_compact"),
        "pixel_dim": dims.get("pixels"),
        "baselines_cached": cached,
        "num_classes": splits.num_classes,
        **protocol.as_dict(),
        "probe_kwargs": {key: jsonable(v) for key, v in probe_kwargs.items()},
        "split_sizes": {split: len(y) for split, y in labels.items()},
        "test_split": test_split,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return report


def check_eval_data(name: str, datamodule: Any) -> None:
    """Fail early, with one line, when ``datamodule`` cannot be evaluated on."""
    if not isinstance(datamodule, EvalData):
        raise ValueError(
            f"{name} needs a data module with eval_dataloader(split) and num_classes "
            f"(a cpc.data.ImageDataModule), got {type(datamodule).__name__}: pass one to fit "
            "or disable the callback"
        )
