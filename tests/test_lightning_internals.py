"""The Lightning internals cpc relies on still exist and mean what cpc assumes.

``pyproject.toml`` pins ``lightning`` to the minor release these were read from (2.6); a new
release that renames one fails here, by name, instead of an assignment silently creating a
new attribute that nothing reads (only the kill/resume tests would notice, by a wrong step).
"""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.connectors.logger_connector import logger_connector
from packaging.requirements import Requirement


@pytest.fixture(scope="module")
def trainer() -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)


def test_pyproject_pins_lightning_to_the_installed_minor_release():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()  # no tomllib in 3.10
    (pin,) = [Requirement(r) for r in re.findall(r'"(lightning\b[^"]*)"', text)]
    installed = version("lightning")
    assert installed in pin.specifier, f"lightning {installed} is outside {pin}"
    assert list(pin.specifier.filter(["2.5.9", "2.7.0"])) == []  # checked on 2.6 only


def test_restart_counters_exist_and_drive_the_logging_step(trainer):
    """cpc.run.lightning_fixes.EpochProgressFix sets ``fit_loop.epoch_loop._batches_that_stepped``
    (the step metrics are logged at) and the epoch progress counters."""
    loop = trainer.fit_loop.epoch_loop
    assert isinstance(loop._batches_that_stepped, int)
    assert "_batches_that_stepped" in inspect.getsource(logger_connector)  # what logs read
    for counts in (trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_progress.total):
        assert {"ready", "started", "processed"} <= set(vars(counts))


def test_throughput_monitor_internals_exist():
    """cpc.run.throughput.ThroughputMonitor fills ``_throughputs`` per stage and overrides the
    ``_compute`` hook that Lightning's monitor calls to log."""
    monitor = ThroughputMonitor(batch_size_fn=len)
    assert isinstance(monitor._throughputs, dict)
    assert callable(ThroughputMonitor._compute)
    assert "self._compute(" in inspect.getsource(ThroughputMonitor)


def test_logger_and_precision_internals_exist(tmp_path):
    """cpc.run.loggers reads TensorBoardLogger's ``_experiment`` (None until made); cpc.cli types
    its precision with ``_PRECISION_INPUT``."""
    assert TensorBoardLogger(tmp_path)._experiment is None
    from lightning.fabric.connector import _PRECISION_INPUT  # noqa: F401
