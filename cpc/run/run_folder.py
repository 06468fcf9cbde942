"""A fit that fails before it logged or saved anything leaves no run folder behind.

Lightning creates ``lightning_logs/version_N`` (with ``config.yaml`` and ``hparams.yaml``) when
the fit starts, before the data and model are set up; a run that fails there (bad data, a
channel mismatch, an out-of-memory first step) would leave an empty-looking folder, and the next
run would be ``version_N+1``. :func:`discard_unstarted` removes it again, with the parent
folders the run created, unless it holds a checkpoint or a ``metrics.csv`` with a metric
(the run did start) or existed before (a resumed run logging into its old folder).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as L


@contextmanager
def discard_unstarted(trainer: L.Trainer) -> Iterator[None]:
    """Around ``trainer.fit``: on an exception, remove the run folder if the run never started.

    Only on global rank 0 (the folder's owner); the folder is ``trainer.log_dir``, fixed here
    (its version is chosen now, as Lightning would at the start of the fit).
    """
    folder = Path(trainer.log_dir) if trainer.log_dir and trainer.is_global_zero else None
    if folder is None or folder.exists():
        new: list[Path] = []
    else:  # the folder, then the parents it will create, all missing now
        new = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        if new and not started(new[0]):
            shutil.rmtree(new[0], ignore_errors=True)
            for parent in new[1:]:  # the empty folders above it that the run made
                if parent.exists() and not any(parent.iterdir()):
                    parent.rmdir()
        raise


def started(folder: Path) -> bool:
    """``folder`` holds what a run writes once it trains: a checkpoint or a ``metrics.csv``
    with a metric (TensorBoard's placeholder ``hp_metric`` is logged before any step)."""
    return any(folder.rglob("*.ckpt")) or any(_metrics(path) for path in folder.rglob("*.csv"))


def _metrics(path: Path) -> bool:
    """The CSV at ``path`` has a value in a column other than ``hp_metric``/``step``/``epoch``."""
    with path.open(newline="") as file:
        return any(
            value
            for row in csv.DictReader(file)
            for key, value in row.items()
            if key not in ("hp_metric", "step", "epoch")
        )
