"""Callbacks that inject faults into a fit (importable by ``class_path`` from a subprocess)."""

import time

import lightning as L
import torch


class SlowSteps(L.Callback):
    """Sleep ``seconds`` after every training batch (no random draws: results are unchanged),
    so a test can kill a run between two steps."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class NonFiniteAt(L.Callback):
    """Fill the model's first weight with NaN before training step ``step``: its loss is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
