"""Fixtures shared by the tests; plain helpers (``fit_args``, ...) live in helpers.py."""

from pathlib import Path

import pytest
import torch
from helpers import write_image_folder

# The tests use tiny tensors: one thread avoids oversubscribing the 2 cores (measured 10x faster).
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
