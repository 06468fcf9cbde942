"""CPCModule: encoder + causal context + InfoNCE predictions k rows ahead (CPC v2 style)."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from cpc.losses.info_nce import info_nce, mi_lower_bound
from cpc.models.context import MaskedConvContext
from cpc.models.encoder import ResNetEncoder


class CPCModule(L.LightningModule):
    """Contrastive Predictive Coding on a patch grid (van den Oord et al. 2018; Hénaff et al. 2019).

    Args:
        encoder: patch encoder with ``num_features`` and ``forward_features``; default
            ``ResNetEncoder()``.
        context: row-causal context network ``(B, D, G, G) -> (B, D, G, G)``; default
            ``MaskedConvContext(encoder.num_features)``.
        steps: rows ahead to predict. With half-overlapping patches k=1 shares pixels with the
            context's own row, so CPC v2 starts at k=2.
        projection_dim: size of the space where predictions meet targets.
        temperature: InfoNCE temperature.
        lr, weight_decay, warmup_steps: AdamW with linear warmup then cosine decay.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        context: nn.Module | None = None,
        steps: tuple[int, ...] = (2, 3),
        projection_dim: int = 64,
        temperature: float = 1.0,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "context"])
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        dim = self.encoder.num_features
        self.context = context if context is not None else MaskedConvContext(dim)
        self.steps = tuple(steps)
        self.target_proj = nn.Conv2d(dim, projection_dim, 1)
        self.predictors = nn.ModuleList(nn.Conv2d(dim, projection_dim, 1) for _ in self.steps)

    def cpc_loss(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(B, C, H, W)`` in [0, 1] -> mean InfoNCE over steps, accuracy, MI bound."""
        latents = self.encoder.forward_features(images)  # (B, D, G, G)
        rows = latents.shape[2]
        if rows <= max(self.steps):
            raise ValueError(
                f"grid has {rows} rows but steps go up to {max(self.steps)}: need at least "
                f"{max(self.steps) + 1}; lower steps or the encoder's patch_stride"
            )
        contexts = self.context(latents)  # (B, D, G, G)
        targets = self.target_proj(latents)  # (B, Dp, G, G)
        losses, accs, bounds = [], [], []
        for k, predictor in zip(self.steps, self.predictors, strict=True):
            pred = predictor(contexts[:, :, :-k])  # rows r predict rows r+k: (B, Dp, G-k, G)
            true = targets[:, :, k:]  # (B, Dp, G-k, G)
            # (B, Dp, G-k, G) -> (B*(G-k)*G, Dp)
            q = pred.permute(0, 2, 3, 1).reshape(-1, pred.shape[1])
            t = true.permute(0, 2, 3, 1).reshape(-1, true.shape[1])
            loss, correct, n = info_nce(q, t, self.hparams.temperature)
            losses.append(loss)
            accs.append(correct.float().mean())
            bounds.append(mi_lower_bound(loss.detach(), n))
        return {
            "loss": torch.stack(losses).mean(),
            "acc": torch.stack(accs).mean(),
            "mi_bound_nats": torch.stack(bounds).mean(),
        }

    def training_step(self, batch, batch_idx):
        images, _ = batch
        out = self.cpc_loss(images)
        if not torch.isfinite(out["loss"]):
            raise FloatingPointError(
                f"non-finite loss at step {self.global_step}: lower lr or use precision 32"
            )
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True)
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        images, _ = batch
        out = self.cpc_loss(images)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = min(self.hparams.warmup_steps, total // 2)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
