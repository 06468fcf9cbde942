"""The whole fit under DDP: 2 processes on the CPU (gloo), through the console script.

Training with a weight-0 task (frozen, so DDP waits for no gradient of it), the online kNN
after validation, and the end-of-fit report on rank 0 alone (its linear probe must not wait for
the other rank); the report must equal a single-process ``cpc eval`` of the final checkpoint.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fit_args, write_image_folder

from cpc.cli import eval_main

REPO = Path(__file__).resolve().parents[2]

TASKS = (
    '[{"class_path": "cpc.tasks.CPCTask"}, '
    '{"class_path": "cpc.tasks.RotationTask", "init_args": {"weight": 0}}]'
)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """The run folder of a 2-process gloo ddp_spawn fit with online kNN and report."""
    tmp = tmp_path_factory.mktemp("ddp")
    train = write_image_folder(tmp / "train", per_class=16)
    test = write_image_folder(tmp / "test", per_class=8)
    args = fit_args(
        train,
        tmp / "run",
        f"--model.tasks={TASKS}",
        **{
            "data.test_root": test,
            "trainer.devices": 2,
            "trainer.strategy": "ddp_spawn",
            "report.enabled": "true",
            "report.k": 5,
            "report.probe_kwargs": '{"epochs": 3}',
        },
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cpc.cli", *args], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (tmp / "run" / "lightning_logs").iterdir()
    return folder


def test_ddp_fit_logs_the_online_knn_and_trains_with_a_weight_0_task(ddp_run):
    with (ddp_run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    knn = [float(r["val/knn_top1"]) for r in rows if r.get("val/knn_top1")]
    assert len(knn) == 1 and 0 <= knn[0] <= 1  # after the validation
    assert not any(key.startswith("train/rotation") for key in rows[0])  # weight 0: skipped


def test_ddp_report_equals_a_single_process_eval_of_the_last_checkpoint(ddp_run, tmp_path):
    """Same weights, data and seeds: the kNN is deterministic, so equal to the last bit; the
    probe's SGD runs in another process, whose float sums may differ in the last bits, so its
    accuracies may differ by at most one test image (1 / 16)."""
    ddp = json.loads((ddp_run / "checkpoints" / "report.json").read_text())
    single = eval_main(
        [f"--ckpt_path={ddp_run / 'checkpoints' / 'last.ckpt'}", f"--out={tmp_path / 'r.json'}"]
    )
    assert ddp["meta"]["split_sizes"] == single["meta"]["split_sizes"] == {
        "train": 24, "val": 8, "test": 16,
    }  # fmt: skip
    models = [key for key in ddp if key != "meta"]
    assert models == [key for key in single if key != "meta"] and "encoder" in models
    for model in models:
        assert ddp[model]["knn"] == single[model]["knn"]
        for key in ("top1", "top5", "val_top1"):
            assert ddp[model]["linear"][key] == pytest.approx(
                single[model]["linear"][key], abs=1 / 16 + 1e-9
            )
