"""last.ckpt from the first steps (before any validation), at the end of fit, and kept (named)
when a NaN loss stops the run."""

import json
from types import SimpleNamespace

import pytest
import torch
from helpers import fit_args
from lightning.pytorch.callbacks import ModelCheckpoint

from cpc.cli import cli_main
from cpc.run.lightning_cli import DEFAULT_CALLBACKS
from cpc.run.periodic_checkpoint import PeriodicCheckpoint

PERIODIC = {"class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint", "init_args": {}}


def callbacks(*extra: dict, every: int = 1) -> str:
    """The default checkpoint pair with ``last.ckpt`` every ``every`` steps, plus ``extra``."""
    periodic = {**PERIODIC, "init_args": {"every_n_train_steps": every}}
    return "--trainer.callbacks=" + json.dumps([DEFAULT_CALLBACKS[0], periodic, *extra])


@pytest.mark.parametrize(
    ("seconds_per_step", "world_size", "by_minutes", "broadcasts"),
    [
        (1.0, 1, [], 0),
        (7.0, 1, [86, 186], 0),  # 7 s: 10 minutes pass at step 86 (602 s), and 86 after 100
        (1.0, 2, [], 23),  # the clock at steps 10, 20, ..., 250 but 100 and 200
        (7.0, 2, [90, 190], 23),  # under DDP at the next multiple of 10
    ],
)
def test_defaults_save_every_100_steps_or_after_10_minutes(
    seconds_per_step, world_size, by_minutes, broadcasts, monkeypatch
):
    """``cpc fit``'s default PeriodicCheckpoint (from DEFAULT_CALLBACKS) stepped by hand under
    a fake clock: Lightning's save every 100 steps (stubbed: it saves when the step is a
    multiple) restarts the 10 minutes; slow steps add a save when they run out. Collectives
    (rank 0's decision broadcast) only under DDP, one every 10 steps, not one a step."""
    (default,) = [c for c in DEFAULT_CALLBACKS if c["class_path"] == PERIODIC["class_path"]]
    callback = PeriodicCheckpoint(**default["init_args"])
    now, by_steps, saves = [0.0], [], []
    monkeypatch.setattr(PeriodicCheckpoint, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(ModelCheckpoint, "on_train_start", lambda self, trainer, module: None)

    def lightning_save(self, trainer, *args):
        if trainer.global_step % self.every_n_train_steps == 0:
            by_steps.append(trainer.global_step)

    monkeypatch.setattr(ModelCheckpoint, "on_train_batch_end", lightning_save)
    monkeypatch.setattr(PeriodicCheckpoint, "_save_last", lambda _, t: saves.append(t.global_step))
    collectives: list[int] = []

    def broadcast(due):
        collectives.append(trainer.global_step)
        return due

    strategy = SimpleNamespace(broadcast=broadcast)
    trainer = SimpleNamespace(
        global_step=0, fast_dev_run=False, world_size=world_size, strategy=strategy
    )
    callback.on_train_start(trainer, None)  # the clock starts at 0
    for step in range(1, 251):
        now[0], trainer.global_step = seconds_per_step * step, step
        callback.on_train_batch_end(trainer, None, None, None, step - 1)
    assert by_steps == [100, 200] and saves == by_minutes
    assert len(collectives) == broadcasts


@pytest.fixture
def saves(monkeypatch) -> list[int]:
    """The global step of every ``last.ckpt`` PeriodicCheckpoint writes (it still writes it)."""
    steps: list[int] = []
    save_last = PeriodicCheckpoint._save_last
    monkeypatch.setattr(
        PeriodicCheckpoint,
        "_save_last",
        lambda self, t: steps.append(t.global_step) or save_last(self, t),
    )
    return steps


@pytest.mark.slow
def test_minutes_save_between_step_saves_by_a_clock_counted_from_the_last_save(
    tiny_folder, tmp_path, monkeypatch, saves
):
    """A fake clock a minute later at every call (fit start, then every step); saves every 4
    steps or 2.5 minutes: the minutes run out at steps 3 and 7 (4 and 8 save by steps)."""
    minutes = iter(range(1000))
    monkeypatch.setattr(PeriodicCheckpoint, "clock", staticmethod(lambda: 60.0 * next(minutes)))
    periodic = {**PERIODIC, "init_args": {"every_n_train_steps": 4, "every_n_minutes": 2.5}}
    callbacks = "--trainer.callbacks=" + json.dumps([periodic])
    args = fit_args(tiny_folder, tmp_path / "run", callbacks, "--trainer.max_epochs=-1")
    cli_main([*args, "--trainer.max_steps=9", "--trainer.limit_val_batches=0"])
    assert saves == [3, 7, 9]  # 9: the end of fit
    with pytest.raises(ValueError, match="every_n_minutes > 0"):
        PeriodicCheckpoint(every_n_minutes=0)


@pytest.mark.slow
def test_every_validation_saves_even_when_the_loss_did_not_improve(tiny_folder, tmp_path, saves):
    """With lr 0 the val/loss never improves after the first validation, so the monitored
    ModelCheckpoint writes last.ckpt once; PeriodicCheckpoint writes it after every validation
    (2 steps an epoch) and at the end of fit."""
    periodic = {**PERIODIC, "init_args": {"every_n_train_steps": 1000, "every_n_minutes": None}}
    callbacks = "--trainer.callbacks=" + json.dumps([DEFAULT_CALLBACKS[0], periodic])
    args = fit_args(tiny_folder, tmp_path / "run", callbacks, "--model.lr=0")
    cli_main([*args, "--trainer.max_epochs=3"])
    assert saves == [2, 4, 6, 6]  # three validations, then the end of fit
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 6


@pytest.mark.slow
def test_nan_stop_before_any_validation_keeps_and_names_the_last_checkpoint(tiny_folder, tmp_path):
    nan = {"class_path": "faults.NonFiniteAt", "init_args": {"step": 3}}
    args = fit_args(tiny_folder, tmp_path / "run", callbacks(nan), "--trainer.max_epochs=1")
    args += ["--data.batch_size=4"]  # 4 steps in the epoch: the NaN comes before validation
    with pytest.raises(FloatingPointError, match="non-finite loss at step 3; the last checkpoint"):
        cli_main(args)
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 3  # every step before the NaN one
    assert all(torch.isfinite(w).all() for w in checkpoint["state_dict"].values())


@pytest.mark.slow
def test_nan_stop_without_a_checkpoint_says_so(tiny_folder, tmp_path):
    nan = {"class_path": "faults.NonFiniteAt", "init_args": {"step": 0}}
    with pytest.raises(FloatingPointError, match="no checkpoint was written before it"):
        cli_main(fit_args(tiny_folder, tmp_path / "run", callbacks(nan)))


@pytest.mark.slow
def test_a_run_stopped_by_max_steps_saves_its_last_step(tiny_folder, tmp_path):
    args = fit_args(tiny_folder, tmp_path / "run", callbacks(every=2), "--trainer.max_epochs=-1")
    cli_main([*args, "--trainer.max_steps=5"])  # validations at steps 2 and 4, saves at 2, 4
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 5


@pytest.mark.slow
def test_alone_it_still_names_and_rewrites_last_ckpt_at_the_end(tiny_folder, tmp_path, caplog):
    """Without the monitored ModelCheckpoint, the end-of-fit save sets ``last_model_path``, so
    the compact projection fitted after training is written into last.ckpt; no save logs
    Lightning's "`weights_only` was not set" (once a save, up to 21 times a run)."""
    only = "--trainer.callbacks=" + json.dumps([PERIODIC])
    compact = ["--model.encoder.compact_dim=4", "--model.encoder.pool_size=2"]
    caplog.set_level("INFO")
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run", only, *compact))
    assert not [m for m in caplog.messages if "weights_only" in m]
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert cli.trainer.checkpoint_callback.last_model_path == str(last)
    state = torch.load(last, weights_only=True)["state_dict"]
    assert state["encoder.compact_projection.basis"].shape == (16 * 4, 4)  # fitted and saved
