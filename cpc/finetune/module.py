"""FineTuneModule: a classifier on a patch encoder, trained with (few) labels.

images (B, C, H, W) -> augment (training) -> encoder.forward_features -> latent grid
(B, D, Gh, Gw) -> pooled to ``pool_size x pool_size`` cells (B, D * s * s) -> head -> logits.

The encoder starts from a ``cpc fit`` checkpoint (``pretrained``) or from scratch: the same
architecture and recipe with and without pretraining is the comparison of CPC v2
(Hénaff et al., 2020, Sec. 4.2).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cpc.models.augment import ImageAugment
from cpc.models.encoder import ResNetEncoder
from cpc.module import WarmupCosine, _is_yaml_value
from cpc.run.lightning_fixes import EpochProgressFix
from cpc.run.random_state import TrainingRandomState

Mode = Literal["full", "linear", "mlp"]


class FineTuneModule(L.LightningModule):
    """Supervised training of ``encoder`` plus a head, on a labelled data module.

    Args:
        encoder: a patch encoder (``forward_features``: images -> ``(B, D, Gh, Gw)``);
            default ``ResNetEncoder()``. Its ``pool_size`` (1 if it has none) sets the head's
            input: the grid averaged to ``pool_size x pool_size`` cells.
        num_classes: classes of the data (``cpc finetune`` links it from the data module).
        mode: ``"full"`` trains encoder and head; ``"linear"`` (a linear head) and ``"mlp"``
            (one hidden layer) keep the encoder frozen.
        pretrained: a ``cpc fit`` checkpoint whose encoder weights are loaded when the fit
            starts (not when it resumes a fine-tune); None trains from scratch.
        lr: AdamW peak learning rate of the head; warmup then cosine to 0.
        encoder_lr_scale: the encoder's rate is ``lr * encoder_lr_scale`` (``"full"`` only):
            a pretrained encoder is moved less than a fresh head.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup (at most half the run).
        augment: batch-wise augmentation of training images; default ``ImageAugment()``
            (shift and flip); ``torch.nn.Identity`` for none.
        hidden: width of the ``"mlp"`` head's hidden layer.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        num_classes: int = 10,
        mode: Mode = "full",
        pretrained: str | None = None,
        lr: float = 2e-3,
        encoder_lr_scale: float = 0.1,
        weight_decay: float = 1e-4,
        warmup_steps: int = 50,
        augment: nn.Module | None = None,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        if mode not in ("full", "linear", "mlp"):
            raise ValueError(f"mode must be 'full', 'linear' or 'mlp', got {mode!r}")
        if num_classes < 2 or lr <= 0 or encoder_lr_scale < 0:
            raise ValueError(
                f"need model.num_classes >= 2, model.lr > 0 and model.encoder_lr_scale >= 0, "
                f"got {num_classes}, {lr}, {encoder_lr_scale}"
            )
        with warnings.catch_warnings():  # live modules are dropped just below
            warnings.filterwarnings("ignore", "Attribute '.*' is an instance of `nn.Module`")
            self.save_hyperparameters()
        # Under `cpc finetune` the hparams hold encoder and augment as their config; built in
        # Python they are live modules, not saved (as CPCModule does)
        live = [k for k in ("encoder", "augment") if not _is_yaml_value(self.hparams.get(k))]
        if live:
            self.save_hyperparameters(ignore=live)
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        self.augment = augment if augment is not None else ImageAugment()
        self.pool_size = getattr(self.encoder, "pool_size", 1)
        features = self.encoder.num_features * self.pool_size**2
        # BatchNorm over the batch's pooled features (after the encoder: no patch sees another)
        norm = nn.BatchNorm1d(features, affine=False)
        if mode == "mlp":
            self.head = nn.Sequential(
                norm, nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )
        else:
            self.head = nn.Sequential(norm, nn.Linear(features, num_classes))
        if mode != "full":
            self.encoder.requires_grad_(False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_top1 = MulticlassAccuracy(num_classes, average="micro")
        self.test_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")

    # -- the model -------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled grid ``(B, D * s * s)``; no graph when frozen."""
        with torch.set_grad_enabled(self.hparams.mode == "full" and torch.is_grad_enabled()):
            grid = self.encoder.forward_features(images)  # (B, D, Gh, Gw)
            return F.adaptive_avg_pool2d(grid, self.pool_size).flatten(1)  # (B, D*s*s)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> logits ``(B, num_classes)``."""
        return self.head(self.features(images))

    def train(self, mode: bool = True) -> FineTuneModule:
        """A frozen encoder stays in eval mode (its norms' statistics do not move)."""
        super().train(mode)
        if self.hparams.mode != "full":
            self.encoder.eval()
        return self

    # -- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Check the data (labelled, the encoder's channels); a new fit loads ``pretrained``."""
        data = self.trainer.datamodule
        if data is not None and not getattr(data, "has_eval_splits", False):
            raise ValueError(
                f"cpc finetune needs a labelled data module, and {type(data).__name__} has no "
                "labels: use an image folder with class subfolders or a labelled dataset"
            )
        channels = getattr(data, "num_channels", None)
        if channels is not None and channels != self.encoder.in_channels:
            raise ValueError(
                f"the data has {channels} channels but the encoder expects "
                f"{self.encoder.in_channels}: set model.encoder.init_args.in_channels: {channels}"
            )
        if stage == "fit" and self.hparams.pretrained and self.trainer.ckpt_path is None:
            load_pretrained_encoder(self.encoder, self.hparams.pretrained)

    def on_fit_start(self) -> None:
        """Save which labelled images train this run, in the run folder."""
        data = self.trainer.datamodule
        if self.trainer.is_global_zero and self.trainer.log_dir and hasattr(data, "label_record"):
            path = Path(self.trainer.log_dir) / "labelled_subset.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data.label_record()))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(self.augment(images))  # (B, num_classes)
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: lower model.lr")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean())
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_acc.update(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.test_top1.update(logits, labels)
        self.test_top5.update(logits, labels)
        self.log_dict({"test/top1": self.test_top1, "test/top5": self.test_top5})

    def configure_optimizers(self):
        hp = self.hparams
        groups = [{"params": self.head.parameters(), "lr": hp.lr}]
        if hp.mode == "full":
            groups.append({"params": self.encoder.parameters(), "lr": hp.lr * hp.encoder_lr_scale})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)
        schedule = WarmupCosine(min(hp.warmup_steps, total // 2), total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_callbacks(self) -> list[L.Callback]:
        """Exact resume: the training's random state and Lightning's epoch counters (for the
        fit; the test after it keeps the fit's)."""
        if self.trainer.state.fn != "fit":
            return []
        return [TrainingRandomState(), EpochProgressFix()]


def load_pretrained_encoder(encoder: nn.Module, path: str) -> None:
    """Load the encoder weights of the ``cpc fit`` checkpoint ``path`` into ``encoder``.

    The compact projection (fitted PCA buffers) is not part of fine-tuning and is skipped.

    Raises:
        ValueError: ``path`` is not a ``cpc fit`` checkpoint, or its encoder has another
            architecture (naming the first differing weight).
    """
    from cpc.run.preflight import check_checkpoint

    checkpoint = check_checkpoint(path)
    if "tasks" not in (checkpoint.get("hyper_parameters") or {}):
        raise ValueError(
            f"--ckpt_path {path} is not a checkpoint of cpc fit (pretraining): pass a "
            "pretraining run's last.ckpt, or a fine-tune's checkpoint to resume it"
        )
    skip = "compact_projection."
    saved = {
        key.removeprefix("encoder."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("encoder.") and not key.startswith(f"encoder.{skip}")
    }
    own = {k: v for k, v in encoder.state_dict().items() if not k.startswith(skip)}
    for key in sorted(saved.keys() | own.keys()):
        shapes = [tuple(d[key].shape) if key in d else "missing" for d in (saved, own)]
        if shapes[0] != shapes[1]:
            raise ValueError(
                f"--ckpt_path {path} has another encoder: {key} is {shapes[0]} there and "
                f"{shapes[1]} here: give model.encoder the pretraining run's encoder options "
                "(its config.yaml)"
            )
    encoder.load_state_dict(saved, strict=False)
