"""CPCModule: one shared patch encoder trained by a weighted sum of pretext tasks.

images (B, C, H, W) -> each task (CPC, rotation, patch position, ...) -> its loss
-> total = sum of weight * loss -> AdamW with warmup and cosine decay.

Speed is logged by :class:`cpc.run.throughput.ThroughputMonitor` (``train/images_per_sec``,
``train/mfu``), from the FLOPs :meth:`CPCModule.training_flops` counts.
"""

from __future__ import annotations

import copy
import math
import os
import warnings

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch import nn

from cpc.models.encoder import ResNetEncoder
from cpc.run.lightning_fixes import EpochProgressFix
from cpc.run.random_state import TrainingRandomState
from cpc.tasks.base import TaskFactory
from cpc.tasks.cpc import CPCTask


class CPCModule(L.LightningModule):
    """Self-supervised pretraining of a patch encoder (CPC alone by default).

    Args:
        encoder: patch encoder with ``num_features``, ``patchify``, ``encode_grid`` and
            ``forward_features``; default ``ResNetEncoder()``.
        tasks: pretext tasks, each built from the encoder's ``num_features``; default
            ``[CPCTask]``. Each keeps its own ``weight``; weight 0 skips it (and freezes its
            parameters, so that DDP does not wait for their gradients).
        lr, weight_decay, warmup_steps: AdamW with linear warmup then cosine decay to 0 over
            the trainer's total steps (:class:`WarmupCosine`; a resumed run that was given more
            steps re-plans the rest of the cosine from where it stood).
        compile: ``torch.compile`` each task (its forward includes the encoder's) in
            :meth:`configure_model`; the first steps pay the compilation (minutes on a CPU).
            Checkpoints keep the same keys either way.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        tasks: list[TaskFactory] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
        compile: bool = False,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():  # live modules are dropped just below
            warnings.filterwarnings("ignore", "Attribute '.*' is an instance of `nn.Module`")
            self.save_hyperparameters()
        # Under `cpc fit` (LightningCLI) the hparams hold encoder and tasks as their config
        # (class_path dicts), which rebuilds them in load_from_checkpoint. Built in Python they
        # are live objects: not saved (pass them again to load_from_checkpoint).
        live = [key for key in ("encoder", "tasks") if not _is_yaml_value(self.hparams.get(key))]
        if live:
            self.save_hyperparameters(ignore=live)
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        built = [make(self.encoder.num_features) for make in (tasks or [CPCTask])]
        for task in built:
            task.check_encoder(self.encoder)
            if task.weight == 0:  # skipped, so no gradient: DDP expects one for every
                task.requires_grad_(False)  # trainable parameter ("unused parameters")
        names = [task.name for task in built]
        if len(set(names)) != len(names):
            raise ValueError(f"each task may appear once, got {names}")
        if not any(task.weight > 0 for task in built):
            raise ValueError(f"every task has weight 0 ({names}): give one a positive weight")
        self.tasks = nn.ModuleDict({task.name: task for task in built})
        self.flops_per_batch: int | None = None  # read by ThroughputMonitor, set on batch 1
        self._compiled = False

    def configure_model(self) -> None:
        """``compile``: compile each task in place (``nn.Module.compile``: the state dict's
        keys do not change), once, on the training device."""
        if self.hparams.get("compile") and not self._compiled:
            for task in self.tasks.values():
                task.compile()
            self._compiled = True

    def setup(self, stage: str) -> None:
        """Fail before the first step, in one line, when the data's channels are not the
        encoder's (the data module knows them; the encoder's ``in_channels`` must follow)."""
        if getattr(self.trainer.datamodule, "few_labels", False):
            raise ValueError(
                "data.labels_per_class and data.label_fraction are for cpc finetune: cpc fit "
                "pretrains on every image, without labels"
            )
        data = getattr(self.trainer.datamodule, "num_channels", None)
        model = getattr(self.encoder, "in_channels", None)
        if data is not None and model is not None and data != model:
            raise ValueError(
                f"the data has {data} channels but the encoder expects {model}: set "
                f"model.encoder.init_args.in_channels: {data}"
            )

    def shared_step(self, images: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        """Images ``(B, C, H, W)`` -> ``{stage/loss, stage/<task>/<metric>, ...}``."""
        return task_metrics(self.encoder, self.tasks, images, stage)

    def training_flops(self, images: torch.Tensor) -> int:
        """FLOPs of a training step's forward and backward on ``images`` ``(B, C, H, W)``
        (``torch.utils.flop_counter`` via Lightning's ``measure_flops``; optimizer excluded).

        Runs eagerly on a copy of the encoder and tasks, with the RNG restored afterwards, so
        the training run (its gradients, random stream, compiled code) is left as it was.
        """
        encoder, tasks = copy.deepcopy(self.encoder), copy.deepcopy(self.tasks)
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.compiler.set_stance("force_eager"):
            return measure_flops(
                tasks,
                lambda: task_metrics(encoder, tasks, images, "train")["train/loss"],
                loss_fn=lambda loss: loss,
            )

    def training_step(self, batch, batch_idx):
        images, _ = batch
        metrics = self.shared_step(images, "train")
        loss = metrics["train/loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at step {self.global_step}; {self._kept_checkpoint()}. "
                "Lower model.lr, or use precision 32 or bf16-mixed instead of 16-mixed"
            )
        self.log("train/loss", metrics.pop("train/loss"), prog_bar=True)
        self.log_dict(metrics)
        return loss

    def on_train_end(self) -> None:
        """Fit the encoder's compact projection (``compact_dim``), if it has one, on the final
        encoder's pooled grids of training images (rank 0's fit, broadcast to every rank;
        :func:`cpc.eval.features.compact_fit_features`), and write it into the ``last``
        checkpoints, which were saved before it existed. ``encoder(images)`` of ``last.ckpt``
        is then the compact feature; other checkpoints (weights it was not fitted on) leave it
        unfitted."""
        if getattr(self.encoder, "compact_projection", None) is None or self.trainer.fast_dev_run:
            return
        from cpc.eval.features import compact_fit_features  # the eval package loads lazily

        if self.trainer.is_global_zero:
            self.encoder.fit_compact(compact_fit_features(self.encoder, self.trainer.datamodule))
        projection = self.encoder.compact_projection
        projection.load_state_dict(self.trainer.strategy.broadcast(projection.state_dict()))
        for path in dict.fromkeys(c.last_model_path for c in self.trainer.checkpoint_callbacks):
            if path:
                self.trainer.save_checkpoint(path, weights_only=False)

    def _kept_checkpoint(self) -> str:
        """Which checkpoint a stopped run leaves (the newest ``last.ckpt`` written)."""
        try:
            callbacks = self.trainer.checkpoint_callbacks
        except RuntimeError:  # no Trainer: a step called by hand
            callbacks = []
        paths = [getattr(c, "last_model_path", "") for c in callbacks]
        written = [path for path in paths if path and os.path.isfile(path)]
        if not written:
            return "no checkpoint was written before it"
        return f"the last checkpoint is kept: {max(written, key=os.path.getmtime)}"

    def validation_step(self, batch, batch_idx):
        images, _ = batch
        metrics = self.shared_step(images, "val")
        self.log("val/loss", metrics.pop("val/loss"), prog_bar=True, sync_dist=True)
        self.log_dict(metrics, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(1, self.trainer.estimated_stepping_batches)
        schedule = WarmupCosine(min(self.hparams.warmup_steps, total // 2), total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_callbacks(self) -> list[L.Callback]:
        """Every fit carries the training's random state through checkpoints and counts its
        epochs right after a resume (exact resume)."""
        return [TrainingRandomState(), EpochProgressFix()]

    def on_train_start(self) -> None:
        """A resumed run with more steps than the checkpoint planned (a raised ``max_steps`` or
        ``max_epochs``) continues the restored schedule to the new end, or restarts it warm
        when it had ended (see :meth:`WarmupCosine.extend`), and unfits the compact
        projection a finished run's ``last.ckpt`` brought: the weights change from the first
        step, so the checkpoints saved until :meth:`on_train_end` fits it again leave it
        unfitted, never stale."""
        projection = getattr(self.encoder, "compact_projection", None)
        if projection is not None:
            projection.reset_parameters()
        scheduler = self.lr_schedulers()
        total = max(1, self.trainer.estimated_stepping_batches)
        if scheduler is not None and scheduler.lr_lambdas[0].total != total:
            schedule, step = scheduler.lr_lambdas[0], scheduler.last_epoch
            schedule.extend(step, total)
            # the restored rate is the old schedule's: set this step's from the new one
            for group, base_lr in zip(
                scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True
            ):
                group["lr"] = base_lr * schedule(step)


class WarmupCosine:
    """Learning-rate factor of step ``s``: linear warmup to 1 over ``warmup`` steps from step
    ``start``, then a cosine from ``peak`` at step ``begin`` to 0 at ``total`` (at first
    ``start`` 0, ``begin`` = ``warmup`` and ``peak`` 1).

    An object, not a function: ``LambdaLR`` saves its attributes in checkpoints, so a resumed
    run follows the schedule the run was started with.
    """

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total
        self.start, self.begin, self.peak = 0, warmup, 1.0

    def __call__(self, step: int) -> float:
        if step < self.start + self.warmup:
            return (step - self.start + 1) / self.warmup
        progress = min(1.0, (step - self.begin) / max(1, self.total - self.begin))
        return self.peak * 0.5 * (1 + math.cos(math.pi * progress))

    def extend(self, step: int, total: int) -> None:
        """Re-plan the rest of the schedule from ``step`` to a new ``total``.

        Before the old end, the cosine restarts from the current factor and decays to 0 at
        ``total`` (no jump in the rate; during warmup only the end moves). A schedule that has
        ended is at 0 and would train nothing: it restarts warm (SGDR, Loshchilov & Hutter,
        2017) as a fresh run starts, a linear warmup to the peak rate (as long as the first
        one, at most half of what is left) then a cosine to 0 at ``total``. A jump straight
        to the peak rate would throw a converged run's loss far up
        (``docs/results.md#resume-and-extension``).
        """
        if step >= self.total:
            self.warmup = min(self.warmup, (total - step) // 2)
            self.start, self.begin, self.peak = step, step + self.warmup, 1.0
        elif step >= self.start + self.warmup:
            self.begin, self.peak = step, self(step)
        self.total = total


def task_metrics(
    encoder: nn.Module, tasks: nn.ModuleDict, images: torch.Tensor, stage: str
) -> dict[str, torch.Tensor]:
    """The weighted sum of the tasks' losses (weight 0 skips a task) and every task metric:
    ``{stage/loss, stage/<task>/<metric>, ...}`` for images ``(B, C, H, W)``."""
    metrics: dict[str, torch.Tensor] = {}
    total = images.new_zeros(())
    for name, task in tasks.items():
        if task.weight == 0:
            continue
        out = task(encoder, images)
        total = total + task.weight * out["loss"]
        metrics.update({f"{stage}/{name}/{key}": value for key, value in out.items()})
    metrics[f"{stage}/loss"] = total
    return metrics


def _is_yaml_value(value) -> bool:
    """True for what a config file holds (None, str, dict, lists of them), not live objects."""
    if isinstance(value, list | tuple):
        return all(_is_yaml_value(item) for item in value)
    return value is None or isinstance(value, str | dict | int | float | bool)
