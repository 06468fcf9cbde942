"""Ctrl-C (SIGINT) and a scheduler's SIGTERM save last.ckpt and say where; the checkpoint
interval is one option; a missing checkpoint says which file and why there is none."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fit_args

from cpc.cli import cli_main, main
from cpc.run.lightning_cli import DEFAULT_CALLBACKS
from cpc.run.periodic_checkpoint import PeriodicCheckpoint

REPO = Path(__file__).resolve().parents[2]


def interval(steps: int) -> list[str]:
    """``last.ckpt`` every ``steps`` steps, never by the clock, without validation."""
    return [
        f"--checkpoint.every_n_train_steps={steps}",
        "--checkpoint.every_n_minutes=0",
        "--trainer.limit_val_batches=0",
        "--trainer.max_epochs=-1",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_saves_last_ckpt_says_where_and_resumes(signum, tiny_folder, tmp_path):
    """The signal comes during step 3 (index): that step ends, last.ckpt is saved at step 4
    (no periodic save before: every 1000 steps), one line names it, the exit status is 1."""
    stop = {"class_path": "faults.SignalAt", "init_args": {"step": 3, "signum": int(signum)}}
    callbacks = "--trainer.callbacks=" + json.dumps([*DEFAULT_CALLBACKS, stop])
    args = fit_args(tiny_folder, tmp_path / "run", callbacks, *interval(1000))
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'reliability'}"}
    env.update(OMP_NUM_THREADS="1", CPC_DEBUG="")
    command = [sys.executable, "-m", "cpc.cli", *args, "--trainer.max_steps=50"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "saved" in line]
    assert lines == [f"stopped by a signal at step 4: saved {last}; resume with --ckpt_path {last}"]
    assert torch.load(last, weights_only=True)["global_step"] == 4
    resumed = fit_args(tiny_folder, tmp_path / "run", *interval(1000), f"--ckpt_path={last}")
    cli = cli_main([*resumed, "--trainer.max_steps=6"])
    assert cli.trainer.global_step == 6
    assert torch.load(last, weights_only=True)["global_step"] == 6


def test_checkpoint_interval_options_set_periodic_checkpoint(tiny_folder, tmp_path):
    args = fit_args(tiny_folder, tmp_path / "run", *interval(3), "--trainer.max_steps=1")
    cli = cli_main(args)
    (periodic,) = [c for c in cli.trainer.callbacks if isinstance(c, PeriodicCheckpoint)]
    assert (periodic.every_n_train_steps, periodic.every_n_minutes) == (3, None)
    only_lr = "--trainer.callbacks=" + json.dumps(DEFAULT_CALLBACKS[2:])
    args = fit_args(tiny_folder, tmp_path / "run2", only_lr, "--checkpoint.every_n_minutes=5")
    with pytest.raises(ValueError, match="trainer.callbacks has none: add cpc.run.periodic_check"):
        cli_main(args)


def test_resume_of_a_run_stopped_before_its_first_save_says_so(
    tiny_folder, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run" / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 0\n")  # what Lightning writes first
    last = run / "checkpoints" / "last.ckpt"
    monkeypatch.setattr(
        sys, "argv", ["cpc", *fit_args(tiny_folder, tmp_path, f"--ckpt_path={last}")]
    )
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main()
    assert str(info.value.code).startswith(
        f"cpc: error: checkpoint not found: {last}: the run in {run} stopped before its first "
        "save (last.ckpt is written every --checkpoint.every_n_train_steps steps"
    )
    monkeypatch.setattr(
        sys, "argv", ["cpc", *fit_args(tiny_folder, tmp_path, "--ckpt_path=x.ckpt")]
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert "checkpoint not found: x.ckpt: pass a .ckpt written by cpc fit" in str(info.value.code)
