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

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cpc.eval.baseline_cache import BaselineCache, architecture, fingerprint
from cpc.eval.features import (
    bf16_features,
    compact_fit_rows,
    device_of,
    extract_feature_sets,
    project_rows,
    projection_ready,
)
from cpc.eval.knn import KNN
from cpc.eval.label_efficiency import budget_rows
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalData, EvalProtocol
from cpc.eval.report_io import MODELS, jsonable

# re-exported: part of this module's API too (benchmarks and user code import them from here)
from cpc.eval.report_io import format_report as format_report
from cpc.eval.report_io import write_report as write_report

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Scorer:
    """How the report scores features: one row per model.

    - kNN: bank ``"train"``, queries ``test_split`` and ``"val"`` (one index for both; the
      kNN's ``val_top1`` is what choices between features are made on);
    - linear probe: fit on ``"train"``, weight decay selected on ``"val"``, ``test_split``
      evaluated once (:func:`cpc.eval.linear_probe.linear_probe` with ``probe_kwargs``);
    - with ``protocol.label_budgets``, both again on few labels of ``"train"``
      (:func:`cpc.eval.label_efficiency.budget_rows`), under ``"budgets"``.

    A new kind of feature (another pooling) is another row.
    """

    num_classes: int
    protocol: EvalProtocol
    probe_kwargs: Mapping[str, Any]
    test_split: str = "test"

    def rows(
        self,
        features: Mapping[str, Mapping[str, torch.Tensor]],
        labels: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        """:meth:`row` of every model in ``features`` (``{split: {model: (N, F)}}``)."""
        return {
            name: self.row({split: features[split][name] for split in features}, labels)
            for name in features["train"]
        }

    def row(
        self, features: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
    ) -> dict[str, Any]:
        """``{"knn": ..., "linear": ...}`` of one model's features ``{split: (N, F)}``, labels
        ``{split: (N,)}``."""
        p, test = self.protocol, self.test_split
        knn = KNN(p).fit(features["train"], labels["train"], self.num_classes)
        row = knn.accuracy(features[test], labels[test])
        if test != "val":
            row["val_top1"] = knn.accuracy(features["val"], labels["val"])["top1"]
        probe = linear_probe(
            features["train"],
            labels["train"],
            features["val"],
            labels["val"],
            features[test],
            labels[test],
            self.num_classes,
            **self.probe_kwargs,
        )
        scored = {"knn": row, "linear": probe}
        if p.label_budgets:
            scored["budgets"] = budget_rows(
                features, labels, p, self.num_classes, self.probe_kwargs, test
            )
        return scored


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


def check_eval_data(name: str, datamodule: Any) -> None:
    """Fail early, with one line, when ``datamodule`` cannot be evaluated on."""
    if not isinstance(datamodule, EvalData):
        raise ValueError(
            f"{name} needs a data module with eval_dataloader(split) and num_classes "
            f"(a cpc.data.ImageDataModule), got {type(datamodule).__name__}: pass one to fit "
            "or disable the callback"
        )
