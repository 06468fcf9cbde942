"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one: weights,
optimizer, data order, augmentation and RNG states all restored.

The kills land where Lightning 2.6 miscounted epochs after a resume
(:mod:`cpc.run.lightning_fixes`), so that without that fix the data order drifts: after the
checkpoint of an epoch's last batch, and after the epoch-end checkpoint of the ``val/loss``
ModelCheckpoint.
"""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cpc.cli import cli_main

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m 'not slow'` skips the file

ROOT = Path(__file__).parents[2]
MAX_STEPS = 9  # 18 train images in batches of 8: 2 steps an epoch (odd steps end inside one)

#: last.ckpt after every step (PeriodicCheckpoint) and at each epoch's end (the default pair)
CALLBACKS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"monitor": "val/loss", "save_last": True, "enable_version_counter": False},
    },
    {
        "class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
        "init_args": {"every_n_train_steps": 1},
    },
]


def args(folder: Path, out: Path, *extra: str, kill: dict | None = None) -> list[str]:
    callbacks = CALLBACKS + [{"class_path": "faults.KillAt", "init_args": kill}] * bool(kill)
    return fit_args(
        folder,
        out,
        f"--trainer.callbacks={json.dumps(callbacks)}",
        "--trainer.max_epochs=-1",
        f"--trainer.max_steps={MAX_STEPS}",
        "--trainer.deterministic=true",
        "--trainer.log_every_n_steps=1",
        "--seed_everything=3",
        *extra,
    )


def killed(command: list[str], last: Path) -> int:
    """Run ``command`` (a fit that kills itself); the step of ``last`` it leaves."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'reliability'}"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    return torch.load(last, weights_only=True)["global_step"]


def test_killed_at_epoch_ends_and_inside_one_and_resumed_is_bit_identical(tiny_folder, tmp_path):
    whole = cli_main(args(tiny_folder, tmp_path / "whole"))
    assert whole.trainer.global_step == MAX_STEPS

    # Fixed kill points (every even step ends an epoch, so other even points test the same):
    end = 2  # an epoch's end: after its last batch's checkpoint, before the epoch-end one, ...
    inside = end + 1  # ... then inside the next epoch (its position comes from counters) ...
    boundary = 8  # ... then after an epoch-end ModelCheckpoint, two epochs into the resumed run
    out = tmp_path / "killed"
    last = out / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    resume = f"--ckpt_path={last}"
    kills = [({"step": end, "at": "validation"}, []), ({"step": inside}, [resume])]
    kills.append(({"step": boundary}, [resume]))
    steps = [
        killed([sys.executable, "-m", "cpc.cli", *args(tiny_folder, out, *more, kill=kill)], last)
        for kill, more in kills
    ]
    assert steps == [end, inside, boundary]

    resumed = cli_main(args(tiny_folder, out, resume))
    assert resumed.trainer.global_step == MAX_STEPS
    assert [p.name for p in (out / "lightning_logs").iterdir()] == ["version_0"]
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    differ = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not differ, f"killed after steps {steps}: {len(differ)} tensors differ: {differ}"
    # the curves are whole: every loss at the uninterrupted run's steps, once (CSV, TensorBoard),
    # but the validation killed at step `end` (logged at end - 1): Lightning does not rerun it
    runs = [folder / "lightning_logs" / "version_0" for folder in (tmp_path / "whole", out)]
    for losses in (csv_losses, tensorboard_losses):
        killed_val = (end - 1, "val/loss")
        assert losses(runs[1]) == [x for x in losses(runs[0]) if x[:2] != killed_val]


def csv_losses(run: Path) -> list[tuple[int, str, float]]:
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    keys = ("train/loss", "val/loss")
    return sorted((int(r["step"]), key, float(r[key])) for r in rows for key in keys if r.get(key))


def tensorboard_losses(run: Path) -> list[tuple[int, str, float]]:
    events = EventAccumulator(str(run)).Reload()  # hides what a purge_step hid
    keys = ("train/loss", "val/loss")
    return sorted((e.step, key, e.value) for key in keys for e in events.Scalars(key))
