"""Training speed in the logs: ``train/images_per_sec`` and ``train/mfu``, via Lightning's
:class:`~lightning.pytorch.callbacks.ThroughputMonitor`.

- ``train/images_per_sec``: images per second on this device, a rolling mean over the last
  ``window_size`` training steps (data, forward, backward, optimizer; validation excluded);
- ``train/mfu``: model FLOPs utilisation, the FLOP/s the training step achieves over the
  device's peak. The FLOPs of one step (forward and backward of the training loss, counted by
  ``torch.utils.flop_counter`` through Lightning's ``measure_flops``) are counted once, on the
  first training batch (:meth:`cpc.module.CPCModule.training_flops`). The peak is *measured*:
  a short square matmul at the precision's compute dtype (:func:`matmul_flops`), what this
  device reaches on dense matmuls, not a datasheet figure (Lightning's table has no CPUs).

Nothing is logged before ``window_size`` steps have run: short runs log no rate.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as L
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.callbacks import ThroughputMonitor as LightningThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage

#: Lightning's Throughput keys -> the names logged under ``train/``
KEYS = {"device/samples_per_sec": "images_per_sec", "device/mfu": "mfu"}


def matmul_flops(
    device: torch.device | str, dtype: torch.dtype = torch.float32, seconds: float = 0.25
) -> float:
    """Sustained FLOP/s of a square matmul on ``device`` at ``dtype``: this device's reference
    rate (8192² on CUDA, 1024² on CPU, repeated for about ``seconds`` after one warm-up)."""
    device = torch.device(device)
    size = 8192 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up
    sync()
    runs, start = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - start < seconds:
        a @ b
        runs += 1
        sync()
    return 2 * size**3 * runs / (time.perf_counter() - start)


def images_in(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    """Images in a ``(images, labels)`` batch (a function, not a lambda: ``ddp_spawn``
    pickles the callbacks)."""
    return len(batch[0])


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype matmuls run in under a Lightning precision (``"bf16-mixed"`` -> bfloat16)."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float64 if precision.startswith("64") else torch.float32


class ThroughputMonitor(LightningThroughputMonitor):
    """Log ``train/images_per_sec`` and ``train/mfu`` (see the module docstring).

    Lightning's callback with two changes: the peak is measured, and only the per-device
    images/s and MFU are logged, under the names above (through ``LightningModule.log``).

    Args:
        window_size: steps of the rolling mean; nothing is logged before that many steps.
        peak_flops: the device's peak FLOP/s for the MFU; None measures it with
            :func:`matmul_flops` at the training precision's compute dtype.
        prog_bar: show images/s in the progress bar.
    """

    def __init__(
        self, window_size: int = 20, peak_flops: float | None = None, prog_bar: bool = True
    ) -> None:
        if window_size < 2:
            raise ValueError(
                f"window_size must be >= 2 (a rate needs two steps), got {window_size}"
            )
        super().__init__(batch_size_fn=images_in, window_size=window_size)
        self.peak_flops = peak_flops
        self.prog_bar = prog_bar

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Lightning's setup, with the measured peak instead of its table's."""
        peak = self.peak_flops
        if peak is None:
            peak = matmul_flops(trainer.strategy.root_device, compute_dtype(trainer.precision))
        self.available_flops = peak
        kwargs = {"available_flops": peak, "world_size": trainer.world_size, **self.kwargs}
        if stage == "fit" and trainer.enable_validation:
            self._throughputs[RunningStage.VALIDATING] = Throughput(**kwargs)
        self._throughputs[trainer.state.stage] = Throughput(**kwargs)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Count the FLOPs of one step on the first batch (on every rank: the count runs the
        loss, whose negatives may be gathered across ranks)."""
        if getattr(pl_module, "flops_per_batch", None) is None and hasattr(
            pl_module, "training_flops"
        ):
            pl_module.flops_per_batch = pl_module.training_flops(batch[0])

    def _compute(self, trainer: L.Trainer, iter_num: int | None = None) -> None:
        """Log the training stage's rate and MFU under their ``train/`` names."""
        if trainer.state.stage != RunningStage.TRAINING:
            return
        metrics = self._throughputs[RunningStage.TRAINING].compute()
        for key, name in KEYS.items():
            if key in metrics:
                prog_bar = self.prog_bar and name == "images_per_sec"
                trainer.lightning_module.log(f"train/{name}", metrics[key], prog_bar=prog_bar)
