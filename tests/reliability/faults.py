"""Callbacks that inject faults into a fit (importable by ``class_path`` from a subprocess)."""

import os
import signal

import lightning as L
import torch


class NonFiniteAt(L.Callback):
    """Fill the model's first weight with NaN before training step ``step``: its loss is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class KillAt(L.Callback):
    """SIGKILL this process at step ``step`` (the number of steps trained): ``at="batch"``
    before its training batch (every checkpoint of the steps before it written), ``"validation"``
    at the start of a validation (after the step's own checkpoint, before the epoch-end one)."""

    def __init__(self, step: int, at: str = "batch") -> None:
        self.step, self.at = step, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._kill_if(trainer, "batch")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._kill_if(trainer, "validation")

    def _kill_if(self, trainer, at: str) -> None:
        if at == self.at and trainer.global_step == self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(L.Callback):
    """Send this process signal ``signum`` (2: SIGINT, 15: SIGTERM) before training step
    ``step``, as Ctrl-C or a cluster scheduler would during that step."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def fill_disk(folder, leave: int = 8192) -> None:
    """Fill the file system of ``folder`` up to ``leave`` free bytes (a file ``filler``)."""
    stat = os.statvfs(folder)
    with open(os.path.join(folder, "filler"), "ab") as file:
        file.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


class FillDiskAt(L.Callback):
    """Fill the disk of ``trainer.default_root_dir`` before training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            fill_disk(trainer.default_root_dir)
