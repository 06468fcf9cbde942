"""Soak test of crash-safe checkpoints and exact resume: kill a small run N times, compare.

    python benchmarks/soak.py                  # 5 kills of a 40-step run
    python benchmarks/soak.py --kills 20 --max_steps 100 --every 3

Trains a small ``cpc fit`` (random 28x28 images in a temp folder, width-8 encoder, CPU,
deterministic, ``last.ckpt`` every ``--every`` steps) once without interruption, then again
with ``--kills`` SIGKILLs at random steps, each followed by ``cpc fit --ckpt_path last.ckpt``,
each kill a random ``--jitter`` after a checkpoint (so some land mid-step or mid-write), and
prints a markdown table: kills survived (each resumed from ``last.ckpt``), the final step,
and the max |difference| over every weight against the uninterrupted run (0 expected).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).parents[1]


def image_folder(root: Path, per_class: int = 24) -> Path:
    """Random 28x28 grayscale images in two classes: ``root/<class>/<i>.png``."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / cls / f"{i}.png")
    return root


def fit_command(data: Path, out: Path, max_steps: int, every: int, *extra: str) -> list[str]:
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": "val/loss",
                "save_last": True,
                "enable_version_counter": False,
            },
        },
        {
            "class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
            "init_args": {"every_n_train_steps": every},
        },
    ]
    options = {
        "data": "cpc.data.ImageFolderDataModule",
        "data.root": data,
        "data.image_size": 28,
        "data.channels": 1,
        "data.batch_size": 8,
        "data.val_size": 0.25,
        "model.encoder": "cpc.models.encoder.ResNetEncoder",
        "model.encoder.width": 8,
        "trainer.max_epochs": -1,
        "trainer.max_steps": max_steps,
        "trainer.accelerator": "cpu",
        "trainer.deterministic": "true",
        "trainer.enable_progress_bar": "false",
        "trainer.default_root_dir": out,
        "trainer.callbacks": json.dumps(callbacks),
        "report.enabled": "false",
        "online_knn.every_n_epochs": 0,
        "seed_everything": 0,
    }
    args = [f"--{key}={value}" for key, value in options.items()]
    return [sys.executable, "-m", "cpc.cli", "fit", *args, *extra]


def step_of(path: Path) -> int:
    """The global step of the checkpoint at ``path``; -1 if there is none."""
    return torch.load(path, weights_only=True)["global_step"] if path.is_file() else -1


def reached(proc: subprocess.Popen, last: Path, step: int) -> bool:
    """Wait until ``last`` holds ``step`` or later (True) or ``proc`` ends (False); the file is
    read only when it changes, so the wait takes little CPU from the run."""
    seen = None
    while proc.poll() is None:
        stat = last.stat() if last.is_file() else None
        if stat is not None and (stat.st_mtime_ns, stat.st_size) != seen:
            seen = (stat.st_mtime_ns, stat.st_size)
            if step_of(last) >= step:
                return True
        time.sleep(0.01)
    return False


def run(
    command: list[str], last: Path | None = None, kill_at: int | None = None, delay: float = 0
) -> int | None:
    """Run ``command``; with ``kill_at``, SIGKILL it ``delay`` seconds after ``last`` holds
    that step or later (anywhere in the next steps, a checkpoint write included). Returns the
    step of ``last`` after the kill, or None when the run ended on its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        if kill_at is not None and reached(proc, last, kill_at):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        if proc.wait() == -signal.SIGKILL:
            return step_of(last)
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"cpc fit failed:\n{log.read().decode()[-3000:]}")
    return None


def max_difference(a: Path, b: Path) -> tuple[float, int, int]:
    """Max |a - b| over all weights of two checkpoints, tensors equal, tensors."""
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    diff = max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)
    return diff, sum(torch.equal(sa[k], sb[k]) for k in sa), len(sa)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs at random steps")
    parser.add_argument("--max_steps", type=int, default=40, help="steps of the run")
    parser.add_argument("--every", type=int, default=1, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill steps")
    parser.add_argument(
        "--jitter", type=float, default=0.1, help="random delay (s) after the step, up to"
    )
    args = parser.parse_args(argv)
    if not 0 < args.kills < args.max_steps:
        parser.error("need 0 < --kills < --max_steps")
    rng = random.Random(args.seed)
    kill_steps = sorted(rng.sample(range(1, args.max_steps), args.kills))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = image_folder(tmp / "images")
        run(fit_command(data, tmp / "whole", args.max_steps, args.every))
        last = tmp / "killed" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        survived, resume = 0, []
        for target in kill_steps:
            command = fit_command(data, tmp / "killed", args.max_steps, args.every, *resume)
            if run(command, last, kill_at=target, delay=rng.uniform(0, args.jitter)) is None:
                break  # the run ended before the kill
            survived += 1
            resume = [f"--ckpt_path={last}"]
            if step_of(last) >= args.max_steps:
                break  # killed after its final checkpoint: nothing is left to train
        if step_of(last) < args.max_steps:
            run(fit_command(data, tmp / "killed", args.max_steps, args.every, *resume))
        whole = tmp / "whole" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        diff, equal, total = max_difference(whole, last)
        steps = step_of(last)
    print(f"kill steps asked: {kill_steps}")
    print("| kills survived | final step | tensors equal | max abs weight difference |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {survived} / {args.kills} | {steps} / {args.max_steps} | {equal} / {total} | {diff:g} |"
    )


if __name__ == "__main__":
    main()
