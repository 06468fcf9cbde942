"""Fixtures shared by the tests; plain helpers (``fit_args``, ...) live in helpers.py."""

from pathlib import Path

import pytest
import torch
from helpers import write_image_folder

# The tests use tiny tensors: one thread avoids oversubscribing the cores.
torch.set_num_threads(1)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """24 random 28x28 grayscale images in two classes."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def baseline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test caches the report's baselines in its own folder, never in ~/.cache/cpc."""
    monkeypatch.setenv("CPC_CACHE", str(tmp_path / "cpc_cache"))
    return tmp_path / "cpc_cache" / "baselines"


#: an unmarked test slower than this (setup + call, seconds) is named at the end of the run
SLOW_SECONDS = 3.0
_unmarked_slow: list[tuple[str, float]] = []
_seconds = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep ``pytest -m "not slow"`` fast: time every test that is not marked ``slow``."""
    report = yield
    if report.when in ("setup", "call") and item.get_closest_marker("slow") is None:
        item.stash.setdefault(_seconds, []).append(report.duration)
        if report.when == "call" and sum(item.stash[_seconds]) > SLOW_SECONDS:
            _unmarked_slow.append((item.nodeid, sum(item.stash[_seconds])))
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    if _unmarked_slow:
        terminalreporter.section("tests over the fast tier's budget")
        for nodeid, seconds in _unmarked_slow:
            terminalreporter.write_line(
                f"{nodeid} took {seconds:.1f} s: mark it @pytest.mark.slow (pyproject.toml)"
            )
