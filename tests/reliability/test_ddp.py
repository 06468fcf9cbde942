"""The whole fit under DDP: 2 processes on the CPU (gloo), through the console script.

Training with a weight-0 task (frozen, so DDP waits for no gradient of it), the online kNN
after validation, and the end-of-fit report on rank 0 alone (its linear probe must not wait for
the other rank); the report must equal a single-process ``cpc eval`` of the final checkpoint.
Each rank draws its own augmentations; killed mid-epoch and resumed, every rank draws what it
drew in the uninterrupted run, and the fit ends with that run's weights.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fit_args, write_image_folder
from recorders import read_draws

from cpc.cli import eval_main

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m 'not slow'` skips the file

REPO = Path(__file__).resolve().parents[2]

TASKS = (
    '[{"class_path": "cpc.tasks.CPCTask"}, '
    '{"class_path": "cpc.tasks.RotationTask", "init_args": {"weight": 0}}]'
)


#: last.ckpt after every step, so a kill leaves a mid-epoch checkpoint
CALLBACKS = [
    {
        "class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
        "init_args": {"every_n_train_steps": 1},
    }
]


def ddp_fit(
    tmp: Path, out: Path, *extra: str, kill: int | None = None
) -> subprocess.CompletedProcess:
    """A 2-process gloo ddp_spawn fit of ``tmp/train`` (24 train images: 12 a rank, 3 batches
    of 4 an epoch, 6 steps) with online kNN and report, through the console script; ``kill``:
    both ranks SIGKILL themselves before that step (:class:`faults.KillAt`). Each rank's
    draws go to ``out/draws-<rank>.txt`` (:class:`recorders.RecordDraws`)."""
    kills = [{"class_path": "faults.KillAt", "init_args": {"step": kill}}] if kill else []
    kills.append({"class_path": "recorders.RecordDraws", "init_args": {"folder": str(out)}})
    args = fit_args(
        tmp / "train",
        out,
        f"--model.tasks={TASKS}",
        f"--trainer.callbacks={json.dumps(CALLBACKS + kills)}",
        *extra,
        **{
            "data.test_root": tmp / "test",
            "data.batch_size": 4,
            "trainer.devices": 2,
            "trainer.strategy": "ddp_spawn",
            "trainer.max_epochs": -1,
            "trainer.max_steps": 6,
            "trainer.deterministic": "true",
            "report.enabled": "true",
            "report.k": 5,
            "report.probe_kwargs": '{"epochs": 3}',
        },
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'reliability'}"}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "cpc.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """The run folder of an uninterrupted :func:`ddp_fit`."""
    tmp = tmp_path_factory.mktemp("ddp")
    write_image_folder(tmp / "train", per_class=16)
    write_image_folder(tmp / "test", per_class=8)
    done = ddp_fit(tmp, tmp / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (tmp / "run" / "lightning_logs").iterdir()
    return folder


def test_ddp_fit_logs_the_online_knn_and_trains_with_a_weight_0_task(ddp_run):
    with (ddp_run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    knn = [float(r["val/knn_top1"]) for r in rows if r.get("val/knn_top1")]
    assert len(knn) == 2 and all(0 <= value <= 1 for value in knn)  # after each validation
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


def test_ddp_ranks_draw_different_augmentations(ddp_run):
    rank_0, rank_1 = (read_draws(ddp_run.parents[1], rank) for rank in (0, 1))
    assert len(rank_0) == len(rank_1) == 6
    assert not set(rank_0) & set(rank_1)  # no step draws alike on the two ranks


def test_ddp_fit_killed_mid_epoch_and_resumed_is_bit_identical(ddp_run, tmp_path):
    """Each rank resumes at its own place in the shared data order and its own random stream:
    killed inside the second epoch and resumed, every rank draws the uninterrupted run's
    augmentations and the fit ends with its weights."""
    out = tmp_path / "killed"
    killed = ddp_fit(ddp_run.parents[2], out, kill=5)
    assert killed.returncode != 0
    (last,) = out.rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 5  # 2 of epoch 1's 3 batches
    resumed = ddp_fit(ddp_run.parents[2], out, f"--ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = torch.load(ddp_run / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(last, weights_only=True)
    assert got["global_step"] == whole["global_step"] == 6
    weights = whole["state_dict"]
    differ = [name for name in weights if not torch.equal(weights[name], got["state_dict"][name])]
    assert not differ, f"{len(differ)} of {len(weights)} tensors differ: {differ}"
    for rank in (0, 1):
        assert read_draws(out, rank) == read_draws(ddp_run.parents[1], rank)
