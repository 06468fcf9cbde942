"""A run killed with SIGKILL at a random step and resumed ends bit-identical to an
uninterrupted one: weights, optimizer, data order, augmentation and RNG states all restored."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers import fit_args

from cpc.cli import cli_main

ROOT = Path(__file__).parents[2]
MAX_STEPS = 7  # 18 train images in batches of 8: 2 steps an epoch (odd steps end inside one)

#: last.ckpt after every step (PeriodicCheckpoint) and at each validation (the default pair)
CALLBACKS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"monitor": "val/loss", "save_last": True, "enable_version_counter": False},
    },
    {"class_path": "cpc.checkpoint_io.PeriodicCheckpoint", "init_args": {"every_n_train_steps": 1}},
]


def args(folder: Path, out: Path, *extra: str, slow: bool = False) -> list[str]:
    callbacks = (
        CALLBACKS + [{"class_path": "faults.SlowSteps", "init_args": {"seconds": 0.3}}] * slow
    )
    return fit_args(
        folder,
        out,
        f"--trainer.callbacks={json.dumps(callbacks)}",
        "--trainer.max_epochs=-1",
        f"--trainer.max_steps={MAX_STEPS}",
        "--trainer.deterministic=true",
        "--seed_everything=3",
        *extra,
    )


def kill_after_step(command: list[str], last: Path, step: int) -> int:
    """Run ``command``; SIGKILL it once ``last`` holds a checkpoint of ``step`` or later."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'reliability'}"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = last.parents[4] / "stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline, seen = time.monotonic() + 300, None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            stat = last.stat() if last.is_file() else None  # read only when it changes
            if stat is not None and (stat.st_mtime_ns, stat.st_size) != seen:
                seen = (stat.st_mtime_ns, stat.st_size)
                if torch.load(last, weights_only=True)["global_step"] >= step:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    return torch.load(last, weights_only=True)["global_step"]


def test_killed_at_random_steps_and_resumed_is_bit_identical(tiny_folder, tmp_path):
    whole = cli_main(args(tiny_folder, tmp_path / "whole"))
    assert whole.trainer.global_step == MAX_STEPS

    # a kill inside an epoch (data position restored), then one at an epoch's end
    inside = random.choice(range(1, MAX_STEPS - 2, 2))
    at_end = random.choice(range(inside + 1, MAX_STEPS, 2))
    out = tmp_path / "killed"
    last = out / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    command = [sys.executable, "-m", "cpc.cli", *args(tiny_folder, out, slow=True)]
    killed = [kill_after_step(command, last, inside)]
    killed.append(kill_after_step([*command, f"--ckpt_path={last}"], last, at_end))
    assert inside <= killed[0] < killed[1] < MAX_STEPS

    resumed = cli_main(args(tiny_folder, out, f"--ckpt_path={last}"))
    assert resumed.trainer.global_step == MAX_STEPS
    assert [p.name for p in (out / "lightning_logs").iterdir()] == ["version_0"]
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    differ = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not differ, f"killed after steps {killed}: {len(differ)} tensors differ: {differ}"
