"""Resuming with --ckpt_path: extend a finished run, refuse what cannot resume, logs whole."""

import csv
import json
import math
import sys

import lightning.pytorch as L
import pytest
import torch
from helpers import fit_args

from cpc.cli import cli_main, main
from cpc.module import WarmupCosine
from cpc.run.resume_checks import architecture_changes


def old_schedule(step: int, warmup: int, total: int) -> float:
    """The schedule before WarmupCosine: linear warmup, cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def test_schedule_is_bit_identical_until_extended_then_continues_without_a_jump():
    schedule = WarmupCosine(warmup=10, total=100)
    assert all(schedule(s) == old_schedule(s, 10, 100) for s in range(120))
    before = schedule(60)
    schedule.extend(60, total=200)
    assert schedule(60) == before and schedule(200) == 0.0
    assert all(schedule(s) > schedule(s + 1) for s in range(60, 199))  # still decaying
    during_warmup = WarmupCosine(warmup=10, total=100)
    during_warmup.extend(5, total=200)
    assert during_warmup(5) == 0.6 and during_warmup(10) == 1.0 and during_warmup(200) == 0.0


def test_an_ended_schedule_restarts_warm_when_extended():
    schedule = WarmupCosine(warmup=10, total=100)
    assert schedule(100) == 0.0  # ended: extending it from here would train nothing
    schedule.extend(100, total=200)  # warms up again, over the first run's 10 steps
    assert [schedule(s) for s in range(100, 111)] == [k / 10 for k in range(1, 11)] + [1.0]
    assert schedule(200) == 0.0 and all(schedule(s) > schedule(s + 1) for s in range(110, 199))
    short = WarmupCosine(warmup=10, total=100)
    short.extend(100, total=104)  # a short extension: at most half of it warms up
    assert [short(s) for s in range(100, 105)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def last_ckpt(out):
    (path,) = out.rglob("last.ckpt")
    return path


def run(tiny_folder, out, *extra):
    return fit_args(
        tiny_folder, out, "--trainer.max_epochs=-1", "--trainer.log_every_n_steps=1", *extra
    )


@pytest.mark.slow
def test_finished_run_extends_with_more_steps_in_the_same_folder(tiny_folder, tmp_path):
    out = tmp_path / "run"
    cli_main(run(tiny_folder, out, "--trainer.max_steps=3"))
    ckpt = last_ckpt(out)
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    finished = torch.load(ckpt, weights_only=True)["state_dict"]
    resumed = cli_main(run(tiny_folder, out, "--trainer.max_steps=5", f"--ckpt_path={ckpt}"))
    assert resumed.trainer.global_step == 5 and last_ckpt(out) == ckpt
    assert [p.name for p in (out / "lightning_logs").iterdir()] == ["version_0"]
    schedule = resumed.trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    # re-planned from step 3 to step 5: a warmup of 1 step (as the first run's), then the cosine
    assert (schedule.start, schedule.begin, schedule.total) == (3, 4, 5)
    assert old_schedule(3, 1, 3) == 0.0 and schedule(3) == 1.0  # ended at 0: a warm restart
    with open(out / "lightning_logs" / "version_0" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    train_steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    assert train_steps == [0, 1, 2, 3, 4]  # both runs' steps, each once (log_every_n_steps=1)
    rates = {int(r["step"]): float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")}
    assert rates[3] > 0 and rates[4] > 0  # the extension trains
    extended = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(not torch.equal(finished[k], extended[k]) for k in finished)


@pytest.mark.slow
def test_nothing_left_to_train_is_one_line_and_makes_no_folder(tiny_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cli_main(fit_args(tiny_folder, out))  # one epoch, 2 steps
    ckpt = last_ckpt(out)
    monkeypatch.setattr(sys, "argv", ["cpc", *fit_args(tiny_folder, out, f"--ckpt_path={ckpt}")])
    with pytest.raises(SystemExit) as info:
        main()
    message = str(info.value.code)
    assert message.startswith("cpc: error: nothing left to train") and "\n" not in message
    assert "trainer.max_epochs is 1: raise trainer.max_epochs (or set it to -1" in message
    assert [p.name for p in (out / "lightning_logs").iterdir()] == ["version_0"]


@pytest.mark.slow
def test_another_batch_size_is_refused_in_one_line(tiny_folder, tmp_path, monkeypatch):
    """The saved data position and Lightning's progress counters count batches of the
    checkpoint's size: with batches of 4 a run stopped after one batch of 8 would resume after
    image 4, not 8."""
    out = tmp_path / "run"
    cli_main(run(tiny_folder, out, "--trainer.max_steps=1"))
    ckpt = last_ckpt(out)
    args = run(tiny_folder, out, "--trainer.max_steps=3", f"--ckpt_path={ckpt}")
    monkeypatch.setattr(sys, "argv", ["cpc", *args, "--data.batch_size=4"])
    with pytest.raises(SystemExit) as info:
        main()
    assert str(info.value.code) == (
        "cpc: error: the checkpoint was trained with data.batch_size 8, not 4: resume with "
        "data.batch_size 8 (its position in the data counts batches of that size), or train a "
        "new run without --ckpt_path (CPC_DEBUG=1 shows the traceback)"
    )
    assert torch.load(ckpt, weights_only=True)["global_step"] == 1  # the run is kept as it was


@pytest.mark.slow
def test_changed_architecture_is_refused_naming_the_option(tiny_folder, tmp_path):
    out = tmp_path / "run"
    cli_main(fit_args(tiny_folder, out))
    args = fit_args(tiny_folder, out, "--trainer.max_epochs=2", f"--ckpt_path={last_ckpt(out)}")
    with pytest.raises(
        ValueError, match=r"model\.encoder\.init_args\.width: 8 in the checkpoint, 16"
    ):
        cli_main([*args, "--model.encoder.width=16"])


def test_architecture_changes_names_options_and_resolves_class_paths():
    saved = {
        "encoder": {"class_path": "cpc.models.encoder.ResNetEncoder", "init_args": {"width": 32}},
        "tasks": [{"class_path": "cpc.tasks.CPCTask", "init_args": {"steps": [2, 3]}}],
        "lr": 0.1,
    }
    same = {
        "encoder": {"class_path": "cpc.models.ResNetEncoder", "init_args": {"width": 32, "new": 1}},
        "tasks": [{"class_path": "cpc.tasks.cpc.CPCTask", "init_args": {"steps": (2, 3)}}],
        "lr": 0.5,  # the optimizer may change
    }
    assert architecture_changes(saved, same) == []
    wider = {**same, "encoder": {**same["encoder"], "init_args": {"width": 64}}}
    assert architecture_changes(saved, wider) == [
        "model.encoder.init_args.width: 32 in the checkpoint, 64 now"
    ]
    two_tasks = {**same, "tasks": [*same["tasks"], {"class_path": "cpc.tasks.RotationTask"}]}
    assert architecture_changes(saved, two_tasks) == [
        "model.tasks.1.class_path: None in the checkpoint, cpc.tasks.rotation.RotationTask now"
    ]


class SaveAt(L.Callback):
    """Save a checkpoint to ``path`` at the start of training step ``step`` (what a periodic
    checkpoint there holds)."""

    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


@pytest.mark.slow
def test_an_extended_run_leaves_the_compact_projection_unfitted_until_its_end(
    tiny_folder, tmp_path
):
    """A finished run's last.ckpt holds a fitted projection; trained on, the checkpoints saved
    before the new end leave it unfitted (not the old fit with new weights), and the end fits
    it again."""
    out, during = tmp_path / "run", tmp_path / "step3.ckpt"
    compact = ["--model.encoder.compact_dim=4", "--model.encoder.pool_size=2"]
    cli_main(run(tiny_folder, out, *compact, "--trainer.max_steps=2"))
    ckpt, key = last_ckpt(out), "encoder.compact_projection.basis"
    assert torch.load(ckpt, weights_only=True)["state_dict"][key].shape == (16 * 4, 4)  # fitted
    save_at = {"class_path": f"{__name__}.SaveAt", "init_args": {"step": 3, "path": str(during)}}
    extend = ["--trainer.max_steps=4", f"--ckpt_path={ckpt}"]
    cli_main(
        run(tiny_folder, out, *compact, *extend, f"--trainer.callbacks+={json.dumps(save_at)}")
    )
    state = torch.load(during, weights_only=True)
    assert state["global_step"] == 3 and state["state_dict"][key].numel() == 0
    final = torch.load(ckpt, weights_only=True)
    assert final["global_step"] == 4 and final["state_dict"][key].shape == (16 * 4, 4)
