"""Lightning callbacks that evaluate the frozen encoder during and after pretraining.

- :class:`OnlineKNN`: a cheap kNN accuracy on the val split after validation (``val/knn_top1``),
  a learning curve for representation quality (Wu et al., 2018; as in solo-learn and lightly).
- :class:`EvaluationReport`: at the end of ``fit``, the full report of
  :func:`cpc.eval.report.evaluate` (kNN + linear probe + baselines on the test split),
  written as ``report.json`` next to the checkpoints.

Both need a data module with ``eval_dataloader(split)`` and ``num_classes``
(:class:`cpc.data.ImageDataModule`) and a LightningModule with an ``encoder`` attribute
(``forward_features``). The online kNN never touches the test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.utils.data import DataLoader

from cpc.eval.features import extract_features, subset_loader
from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol
from cpc.eval.report import check_eval_data, evaluate
from cpc.eval.report_io import format_report, write_report


class OnlineKNN(L.Callback):
    """Log ``val/knn_top1``: kNN accuracy of the frozen encoder's features on the val split.

    After every ``every_n_epochs``-th validation run (sanity checks excluded) the encoder's
    pooled features are extracted for a fixed, seeded subset of at most ``bank_size``
    images of the eval ``"train"`` split (the memory bank) and for the whole val split (the
    queries), and the weighted kNN vote of :class:`cpc.eval.knn.KNN` classifies the
    queries. A fixed bank keeps the curve comparable across epochs.

    Distributed training: every rank computes the same number on the full, unsharded eval
    loaders (they are built here, so Lightning does not shard them). This needs no collective
    of its own, cannot deadlock if a rank is slow, and leaves ``val/knn_top1`` in every rank's
    ``callback_metrics`` (so ``ModelCheckpoint``/``EarlyStopping`` may monitor it, which they
    cannot with ``rank_zero_only``). It is logged with ``sync_dist=True``: the mean of equal
    values is that value, and it evens out any last-bit difference between GPUs. The cost is
    one bank-sized forward pass per rank, which rank 0 alone would take as long to do.

    Checkpointing: the count of validation runs is saved in the checkpoint, so a resumed run
    keeps evaluating on the same schedule.

    Args:
        every_n_epochs: evaluate after every n-th validation run; 0 switches the callback off.
        bank_size: at most this many eval-"train" images form the memory bank.
        protocol: k, temperature, pooling and standardisation of the kNN
            (:class:`cpc.eval.protocol.EvalProtocol`); ``cpc fit`` passes the report's.
        seed: seed of the bank subset.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        bank_size: int = 10000,
        protocol: EvalProtocol | None = None,
        seed: int = 0,
    ) -> None:
        if every_n_epochs < 0 or bank_size < 1:
            raise ValueError(
                f"need every_n_epochs >= 0 and bank_size >= 1, got {every_n_epochs}, {bank_size}"
            )
        self.every_n_epochs = every_n_epochs
        self.bank_size = bank_size
        self.protocol = protocol or EvalProtocol()
        self.seed = seed
        self.validation_runs = 0
        self._bank_loader: tuple[Any, DataLoader] | None = None  # (data module, loader)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.every_n_epochs:
            _check_can_evaluate(type(self).__name__, trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.every_n_epochs:
            return
        self.validation_runs += 1
        if self.validation_runs % self.every_n_epochs:
            return
        top1 = self.knn_top1(pl_module.encoder, trainer.datamodule, pl_module.device)
        pl_module.log("val/knn_top1", top1, prog_bar=True, sync_dist=True)

    def knn_top1(self, encoder: torch.nn.Module, datamodule: Any, device: torch.device) -> float:
        """kNN top-1 (a fraction) of the val split against the fixed train bank."""
        p = self.protocol
        bank_f, bank_y = extract_features(
            encoder, self._bank(datamodule), p.pooling, device=device, progress=False
        )
        val_f, val_y = extract_features(
            encoder, datamodule.eval_dataloader("val"), p.pooling, device=device, progress=False
        )
        knn = KNN(p).fit(bank_f, bank_y, datamodule.num_classes)
        return knn.accuracy(val_f, val_y)["top1"]

    def _bank(self, datamodule: Any) -> DataLoader:
        """Loader over a seeded subset of the eval "train" split, built once per data module."""
        if self._bank_loader is None or self._bank_loader[0] is not datamodule:
            loader = subset_loader(datamodule.eval_dataloader("train"), self.bank_size, self.seed)
            self._bank_loader = (datamodule, loader)
        return self._bank_loader[1]

    def state_dict(self) -> dict[str, Any]:
        return {"validation_runs": self.validation_runs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validation_runs = state_dict["validation_runs"]


class EvaluationReport(L.Callback):
    """At the end of ``fit``, evaluate the final encoder and write ``report.json``.

    Runs :func:`cpc.eval.report.evaluate` on ``trainer.datamodule`` on global rank 0
    only (other ranks finish at once), on the training device, and writes the JSON next to the
    checkpoints (the ``ModelCheckpoint`` dirpath, else ``trainer.log_dir``), then logs the table
    with ``rank_zero_info``. Skipped under ``fast_dev_run`` (a smoke test, not a result).

    The evaluation protocol's fields are given flat, as keywords (``EvaluationReport(k=5)``,
    ``--report.pooling full``); they build :attr:`protocol`, which ``cpc fit`` also hands to
    the online kNN.

    Args:
        enabled: False skips the report (``--report.enabled false``).
        baselines: also evaluate the random-init encoder and raw pixels.
        filename: name of the JSON file.
        cache: reuse the baselines' rows of an earlier report with the same data,
            architecture and protocol (:mod:`cpc.eval.baseline_cache`, ``$CPC_CACHE``).
        **protocol: fields of :class:`cpc.eval.protocol.EvalProtocol` (k, temperature,
            pooling, knn_standardize, knn_pca, knn_exact_max, memmap, compact, probe_kwargs,
            seed, label_budgets, label_draws); an unknown one is a TypeError.
    """

    def __init__(
        self,
        enabled: bool = True,
        baselines: bool = True,
        filename: str = "report.json",
        cache: bool = True,
        **protocol: Any,
    ) -> None:
        self.protocol = EvalProtocol(**protocol)
        self.enabled = enabled
        self.baselines = baselines
        self.filename = filename
        self.cache = cache
        self.path: Path | None = None  # where the last report was written

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.enabled and stage == "fit":
            _check_can_evaluate(type(self).__name__, trainer, pl_module)
            if self.protocol.compact and not callable(getattr(pl_module.encoder, "pool", None)):
                raise ValueError(
                    f"{type(pl_module.encoder).__name__} has no pool(grid) giving the compact "
                    "feature the report scores: set report.compact false"
                )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        if trainer.fast_dev_run:
            rank_zero_info("EvaluationReport: skipped under fast_dev_run")
            return
        _finish_progress_bar(trainer)
        last = next(
            (c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), None
        )
        report = evaluate(
            pl_module.encoder,
            trainer.datamodule,
            self.protocol,
            baselines=self.baselines,
            device=trainer.strategy.root_device,  # the module was moved to the CPU at teardown
            progress=trainer.progress_bar_callback is not None,
            checkpoint_path=last,  # the last.ckpt this report describes
            cache=self.cache,
        )
        report["meta"].update(epoch=trainer.current_epoch, global_step=trainer.global_step)
        self.path = write_report(report, Path(self._folder(trainer)) / self.filename)
        rank_zero_info(f"Evaluation report ({self.path}):\n{format_report(report)}")

    @staticmethod
    def _folder(trainer: L.Trainer) -> str:
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath:
            return ckpt.dirpath
        return trainer.log_dir or trainer.default_root_dir or os.getcwd()


def _finish_progress_bar(trainer: L.Trainer) -> None:
    """Stop a live progress display (Rich's) before the report, so the training bar is drawn
    once, above the report, instead of again below it when Lightning stops it at teardown."""
    progress = getattr(trainer.progress_bar_callback, "progress", None)
    if callable(getattr(progress, "stop", None)):
        progress.stop()  # Rich's Progress.stop is idempotent: teardown's stop does nothing


def _check_can_evaluate(name: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Fail before training, not after it, when there is nothing to evaluate on."""
    if not hasattr(pl_module, "encoder"):
        raise ValueError(f"{name} needs a LightningModule with an `encoder` attribute")
    check_eval_data(name, trainer.datamodule)
    if trainer.datamodule.num_classes < 2:
        raise ValueError(
            f"{name} needs at least 2 classes of labelled images, got "
            f"{trainer.datamodule.num_classes}: add a class folder, or set report.enabled false "
            "and online_knn.every_n_epochs 0"
        )
    if getattr(trainer.datamodule, "val_size", None) == 0:
        raise ValueError(
            f"{name} needs validation images (the probe's weight decay and the online kNN are "
            "chosen and scored on them): set data.val_size > 0, or report.enabled false and "
            "online_knn.every_n_epochs 0"
        )
