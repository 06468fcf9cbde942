"""Lightning's epoch counters after a resume, kept as an uninterrupted fit keeps them.

Lightning 2.6 miscounts epochs after resuming from a checkpoint saved at an epoch's end (by a
``ModelCheckpoint`` whose validation runs once an epoch, in ``on_train_epoch_end``, or by a
periodic checkpoint after the epoch's last batch). Two cases, seen in ``benchmarks/soak.py``:

- saved in ``on_train_epoch_end`` (and ``max_steps`` limits the fit): the fit loop finishes
  that epoch once more (no batches, the epoch-end hooks again) and counts it as processed a
  second time. ``epoch_progress.processed`` then stays one ahead, and since Lightning passes it
  to every sampler's ``set_epoch``, each later epoch is shuffled in the next epoch's order.
- saved after an epoch's last batch: the fit loop starts the next epoch without counting it as
  started (nor calling ``on_train_epoch_start``), so ``started`` stays one behind and the
  checkpoints written later misplace the data position (``ImageDataModule.state_dict``
  reads it from these counters): a second kill resumes at the start of the epoch.

After the first case the logging step is also one ahead (metrics land one step late).

:class:`EpochProgressFix` restores the two invariants of an uninterrupted fit, so that every
checkpoint a resumed run writes equals the uninterrupted run's.
"""

from __future__ import annotations

import lightning as L


class EpochProgressFix(L.Callback):
    """During a training batch the fit loop has started one epoch more than it processed, and
    the logging step is the number of steps trained; in ``on_train_epoch_end`` it has processed
    the epochs it started. A no-op when Lightning counts right (every step of an uninterrupted
    fit)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for counts in _counts(trainer):
            counts.ready = counts.started = max(counts.started, counts.processed + 1)
        # the logging step: one ahead after an epoch-end resume (one optimizer: its steps)
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for counts in _counts(trainer):
            counts.processed = min(counts.processed, counts.started)


def _counts(trainer: L.Trainer) -> tuple:
    progress = trainer.fit_loop.epoch_progress
    return progress.current, progress.total
