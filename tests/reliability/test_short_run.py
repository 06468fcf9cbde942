"""A short fit through the console script: a quiet start, and viz works on what it logged.

The run is 2 steps (fewer than ``trainer.log_every_n_steps``): only the validation at the end of
the epoch is logged, and viz draws its curves from that.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import fit_args
from PIL import Image

from cpc import viz

REPO = Path(__file__).resolve().parents[2]

#: Lightning's start-up lines that say nothing about the run (issue 11)
NOISE = [
    "No seed found",
    "Seed set to",
    "GPU available:",
    "TPU available:",
    "Tip:",
    "litlogger",
    "LeafSpec",
    "Loading `train_dataloader` to estimate",
]


def write_folder(root: Path, n_per_class: int, seed: int) -> Path:
    """Dark and bright noise images in ``root/<class>/``, so the classes differ."""
    rng = np.random.default_rng(seed)
    for c, (low, high) in {"dark": (0, 120), "bright": (120, 255)}.items():
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(low, high, (28, 28), dtype=np.uint8)).save(
                root / c / f"{i}.png"
            )
    return root


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[Path, str]:
    """(run root, what the fit printed)."""
    tmp = tmp_path_factory.mktemp("short")
    train, test = write_folder(tmp / "train", 12, 0), write_folder(tmp / "test", 6, 1)
    args = fit_args(train, tmp / "runs", **{"data.test_root": test})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cpc.cli", *args], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "runs", done.stdout + done.stderr


@pytest.mark.slow
def test_a_short_fit_starts_quietly(short_run):
    output = short_run[1]
    assert [line for line in output.splitlines() if any(n in line for n in NOISE)] == []
    assert "Total params" in output  # the model summary stays
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in output


def viz_args(runs: Path, out: Path) -> list[str]:
    """``python -m cpc.viz`` on the run's own data (its config.yaml), small and fast."""
    return [
        f"--ckpt_path={runs}",
        f"--out={out}",
        "--sample=12",
        "--bank=100",
        "--method=pca",
        "--neighbours=4",
    ]


@pytest.mark.slow
def test_viz_of_a_short_run_says_which_run_and_draws_what_was_logged(short_run, tmp_path, caplog):
    runs = short_run[0]
    with caplog.at_level(logging.INFO, logger="cpc.viz.script"):
        paths = viz.main(viz_args(runs, tmp_path / "figures"))  # a folder: viz picks and says
    (last,) = runs.rglob("last.ckpt")
    assert f"checkpoint {last} (the newest under {runs}; pass a .ckpt file" in caplog.text
    assert sorted(paths) == [
        "confusion", "embeddings", "knn_per_class", "neighbours", "training_curves",
    ]  # fmt: skip
    curves = viz.read_metrics(last.parents[1] / "metrics.csv")
    assert "val/loss" in curves and "train/loss" not in curves  # 2 steps < log_every_n_steps


@pytest.mark.slow  # its fixture fits a run
def test_viz_writes_all_figures_or_none(short_run, tmp_path, monkeypatch):
    runs = short_run[0]

    def broken(*args, **kwargs):
        raise ValueError("the last figure fails")

    monkeypatch.setattr("cpc.viz.script.confusion_matrix_figure", broken)
    with pytest.raises(ValueError, match="the last figure fails"):
        viz.main(viz_args(runs, tmp_path / "figures"))
    assert not (tmp_path / "figures").exists()


@pytest.mark.slow
def test_viz_without_a_log_leaves_the_curves_out_and_says_why(short_run, tmp_path, caplog):
    runs = short_run[0]
    (last,) = runs.rglob("last.ckpt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"  # a copy without metrics.csv nearby
    ckpt.write_bytes(last.read_bytes())
    (tmp_path / "run" / "config.yaml").write_text((last.parents[1] / "config.yaml").read_text())
    with caplog.at_level(logging.WARNING, logger="cpc.viz.script"):
        paths = viz.main(viz_args(ckpt, tmp_path / "figures"))
    assert "training_curves" not in paths and "no training curves" in caplog.text
