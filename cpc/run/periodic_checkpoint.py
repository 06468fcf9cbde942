"""``last.ckpt`` often: every N steps or minutes, after each validation, at the end of fit, and
when SIGTERM or Ctrl-C stops the run (written atomically by
:class:`cpc.run.checkpoint_files.AtomicCheckpointIO`).

A ModelCheckpoint that monitors ``val/loss`` saves nothing before the first validation, and
after one only when the loss improved: :class:`PeriodicCheckpoint` bounds what a kill loses.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class PeriodicCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` training steps or ``every_n_minutes``,
    whichever comes first, after every validation, and at the end of fit.

    A kill loses at most that much work. With ``enable_version_counter=False`` it shares
    ``last.ckpt`` with a monitored ModelCheckpoint that also saves it (after a validation that
    improved the loss): the file is always the newest state. Under DDP every rank follows
    rank 0's clock, read every :attr:`clock_every_n_steps` steps (one broadcast then, not
    one a step), so a save by the minutes comes up to that many steps late.

    A fit stopped by SIGTERM (a cluster scheduler) or a first Ctrl-C (SIGINT, handled as
    Lightning handles SIGTERM: at the end of the running step; a second one stops at once)
    saves ``last.ckpt`` and says where in one line before the process exits.

    Args:
        dirpath: folder of ``last.ckpt``; default: the logger's ``checkpoints/``.
        every_n_train_steps: steps between saves (default 100, about a quarter of an epoch of
            ``configs/fashion_mnist.yaml``: 429 steps of 128 images).
        every_n_minutes: the most minutes of training between saves (default 10, for steps
            slower than 6 s; None: steps only), counted from the start of fit or the last save.
    """

    #: seconds of a monotonic clock (a test replaces it)
    clock = staticmethod(time.monotonic)
    #: under DDP, rank 0's clock is read (and broadcast) every this many steps only
    clock_every_n_steps = 10

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int = 100,
        every_n_minutes: float | None = 10.0,
    ) -> None:
        if every_n_train_steps < 1 or (every_n_minutes is not None and not every_n_minutes > 0):
            raise ValueError(
                "need every_n_train_steps >= 1 and every_n_minutes > 0 (or None), got "
                f"{every_n_train_steps} and {every_n_minutes}"
            )
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,
        )
        self.every_n_train_steps, self.every_n_minutes = every_n_train_steps, every_n_minutes
        self._saved_at = 0.0  # clock() at the start of fit or the last save

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved_at = self.clock()
        self._previous_sigint = _stop_gracefully_on_sigint()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if getattr(self, "_previous_sigint", None) is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A stop by signal (Lightning's SIGTERMException, raised at the end of a step) saves
        ``last.ckpt`` and prints where."""
        super().on_exception(trainer, pl_module, exception)
        stopped = isinstance(exception, SIGTERMException) and trainer.global_step > 0
        if stopped and not trainer.fast_dev_run:
            self._save_last(trainer)
            rank_zero_info(
                f"stopped by a signal at step {trainer.global_step}: saved "
                f"{self.last_model_path}; resume with --ckpt_path {self.last_model_path}"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Lightning's save every ``every_n_train_steps``, else one when the minutes are up."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        now = self.clock()
        if trainer.global_step % self.every_n_train_steps == 0:  # Lightning saved just now
            self._saved_at = now
        elif self.every_n_minutes is not None and not trainer.fast_dev_run:
            many = trainer.world_size > 1
            if many and trainer.global_step % self.clock_every_n_steps:
                return  # a collective on every step would cost more than the clock is worth
            due = now - self._saved_at >= 60 * self.every_n_minutes
            if many:  # every rank as rank 0: saving is collective
                due = trainer.strategy.broadcast(due)
            if due:
                self._save_last(trainer)
                self._saved_at = now

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save after every validation of a fit: a ModelCheckpoint that monitors ``val/loss``
        rewrites ``last.ckpt`` only when the loss improved (Lightning 2.6)."""
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and not (trainer.sanity_checking or trainer.fast_dev_run):
            self._save_last(trainer)
            self._saved_at = self.clock()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state: a fit stopped by ``max_steps`` between two saves (and past
        the last validation) would otherwise leave an older ``last.ckpt``."""
        if not trainer.fast_dev_run and trainer.global_step > 0:
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        self.last_model_path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        # weights_only given: Lightning logs "`weights_only` was not set" at every save otherwise
        trainer.save_checkpoint(self.last_model_path, weights_only=False)


def _stop_gracefully_on_sigint() -> Any:
    """Make the first SIGINT do what Lightning's SIGTERM handler does (stop at the end of the
    running step, raising SIGTERMException, every rank told); a second SIGINT gets the
    previous handler back (KeyboardInterrupt at once). Returns that previous handler, or None
    when nothing was changed (not the main thread, or no Lightning SIGTERM handler)."""
    sigterm = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(sigterm):
        return None
    previous = signal.getsignal(signal.SIGINT)

    def first_sigint(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        sigterm(signum, frame)

    signal.signal(signal.SIGINT, first_sigint)
    return previous
