"""One run folder per fit: TensorBoard events and a ``metrics.csv`` side by side.

Two separate loggers each pick the next free ``version_N`` on their own, so the second one
lands in the folder after the first's. :class:`RunLogger` is one logger (one version, chosen
once, by TensorBoard) that also writes every logged value to ``metrics.csv`` in its folder, so
curves are readable without TensorBoard (``cpc.viz`` and the notebook read the CSV).

A resumed fit (``cpc fit --ckpt_path .../version_N/checkpoints/last.ckpt``) logs into the same
``version_N`` (the CLI sets ``version`` and ``purge_step``): ``metrics.csv`` keeps the rows
logged before the resumed steps and continues after them, and TensorBoard hides the events a
killed run logged after its checkpoint, so curves are whole.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only


class RunLogger(TensorBoardLogger):
    """TensorBoard logger that mirrors metrics and hyperparameters into ``log_dir/metrics.csv``.

    Args:
        save_dir: parent of ``name/``; ``cpc fit`` links it to ``trainer.default_root_dir``.
        name: experiment folder under ``save_dir``.
        version: ``None`` takes the next free ``version_N``; an int or a folder name reuses it.
        purge_step: TensorBoard hides the events a previous run logged in this version at this
            step and after (``cpc fit --ckpt_path`` sets the checkpoint's step: what a killed
            run logged after its checkpoint is logged again).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike = ".",
        name: str = "lightning_logs",
        version: int | str | None = None,
        purge_step: int | None = None,
    ) -> None:
        super().__init__(save_dir, name=name, version=version, purge_step=purge_step)
        self.purge_step = purge_step
        self.csv: CSVLogger | None = None  # made on first use, once TensorBoard's folder exists

    @property
    @rank_zero_experiment
    def experiment(self):
        """TensorBoard's writer; a resumed run's event file is named to sort after the files
        already in the folder (see :func:`wait_for_a_later_second`)."""
        if self._experiment is None and self.purge_step is not None:
            wait_for_a_later_second(Path(self.log_dir))
        return super().experiment

    def _metrics_csv(self) -> CSVLogger:
        """The CSV logger, made on first use (Lightning's first ``log_hyperparams``/``save``)
        with the rows of an existing ``metrics.csv`` that stay: those before ``purge_step``
        (all of them without one), written back at once, atomically (Lightning's writer deletes
        the file when it is made; the kept rows must not wait in memory for the first step)."""
        if self.csv is None:
            path = Path(self.log_dir) / "metrics.csv"
            rows = [row for row in _read_rows(path) if self._kept(row)]
            staged = _write_rows_beside(path, rows) if rows else None  # before the deletion
            self.csv = CSVLogger(self.log_dir, name="", version="")  # writes into log_dir itself
            with warnings.catch_warnings():  # the folder holds TensorBoard's files, not a CSV
                warnings.filterwarnings("ignore", "Experiment logs directory .* is not empty")
                writer = self.csv.experiment  # Lightning's writer: deletes metrics.csv
            if staged is not None:
                os.replace(staged, path)
                writer.metrics_keys = sorted(set().union(*rows))  # it appends, adding columns
        return self.csv

    def _kept(self, row: dict[str, str]) -> bool:
        """A previous run's row stays when logged before ``purge_step`` (the resumed step;
        what a killed run logged from it on is logged again)."""
        return self.purge_step is None or float(row.get("step") or 0) < self.purge_step

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self._metrics_csv().log_metrics(metrics, step)

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, metrics: dict[str, Any] | None = None
    ) -> None:
        super().log_hyperparams(params, metrics)
        self._metrics_csv().log_hyperparams(params)

    @rank_zero_only
    def save(self) -> None:
        super().save()
        self._metrics_csv().save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self.csv is not None:
            self.csv.finalize(status)


def wait_for_a_later_second(folder: Path) -> None:
    """Return once the clock's second is past that of every event file in ``folder``.

    TensorBoard reads a folder's event files in name order, and a name is
    ``events.out.tfevents.<second>.<host>.<pid>...``: a run resumed within the second its killed
    predecessor started could sort first, and the predecessor's purge would then hide the
    resumed run's events. Waits at most about a second, and only when resuming.
    """
    names = [p.name.split(".") for p in folder.glob("events.out.tfevents.*")]
    seconds = [int(parts[3]) for parts in names if len(parts) > 3 and parts[3].isdigit()]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)


def _write_rows_beside(path: Path, rows: list[dict[str, str]]) -> Path:
    """``rows`` as a CSV (columns sorted) in a temporary file next to ``path``, flushed to
    disk: its path, for ``os.replace`` onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as file:
        out = csv.DictWriter(file, fieldnames=sorted(set().union(*rows)))
        out.writeheader()
        out.writerows(rows)
        file.flush()
        os.fsync(file.fileno())
    return Path(tmp)


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (empty cells dropped); none when there is no file."""
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
