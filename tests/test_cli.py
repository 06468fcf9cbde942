import sys
from importlib import metadata

import pytest
import torch
from helpers import ROOT, fit_args

import cpc
from cpc.cli import cli_main
from cpc.module import CPCModule


@pytest.mark.slow
def test_fit_writes_checkpoint_and_resumes(tiny_folder, tmp_path, caplog):
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run"))
    run = tmp_path / "run" / "lightning_logs" / "version_0"
    assert f"run folder: {run}" in caplog.messages  # said at the start
    assert cli.trainer.global_step == 2  # 18 train images // batch 8
    logged = cli.trainer.callback_metrics
    assert torch.isfinite(logged["train/loss"]) and torch.isfinite(logged["val/loss"])
    ckpts = sorted((tmp_path / "run").rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert ckpts
    model = CPCModule.load_from_checkpoint(ckpts[-1])  # the CLI stored the whole model config
    assert model.encoder.num_features == 16 and model.tasks["cpc"].steps == (2, 3)

    resume = ["--trainer.max_epochs=2", f"--ckpt_path={ckpts[-1]}"]
    resumed = cli_main(fit_args(tiny_folder, tmp_path / "run2", *resume))
    assert resumed.trainer.global_step == 4


def test_console_script_runs_the_command_and_ends_an_input_error_in_one_line(monkeypatch):
    """``cpc`` is ``cpc.cli:main`` (pyproject and the installed metadata); it hands the
    command line to LightningCLI (``fit``) or ``eval_main``, returns None (exit status 0) and
    ends a ValueError with one line."""
    (script,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "cpc"]
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n")[1]
    assert scripts.splitlines()[0] == 'cpc = "cpc.cli:main"' and script.value == "cpc.cli:main"
    main = script.load()
    calls = []
    monkeypatch.setattr("cpc.cli.cli_main", lambda: calls.append(("fit", sys.argv[1:])))
    monkeypatch.setattr("cpc.cli.eval_main", lambda args: calls.append(("eval", args)))
    for argv in (["fit", "--config=c.yaml"], ["eval", "--ckpt_path=x.ckpt"]):
        monkeypatch.setattr(sys, "argv", ["cpc", *argv])
        assert main() is None
    assert calls == [("fit", ["fit", "--config=c.yaml"]), ("eval", ["--ckpt_path=x.ckpt"])]

    def bad_input():
        raise ValueError("data.batch_size must be >= 1,\n  got 0")

    monkeypatch.delenv("CPC_DEBUG", raising=False)
    monkeypatch.setattr("cpc.cli.cli_main", bad_input)
    monkeypatch.setattr(sys, "argv", ["cpc", "fit"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == (
        "cpc: error: data.batch_size must be >= 1, got 0 (CPC_DEBUG=1 shows the traceback)"
    )


@pytest.mark.slow
def test_checkpointing_can_be_switched_off(tiny_folder, tmp_path):
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run", "--trainer.enable_checkpointing=false"))
    assert cli.trainer.global_step == 2 and not list((tmp_path / "run").rglob("*.ckpt"))


@pytest.mark.slow
def test_default_callbacks_can_be_replaced_and_old_sections_name_the_new_place(
    tiny_folder, tmp_path
):
    early = '[{"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {...}}]'
    early = early.replace("...", '"monitor": "val/loss"')
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run", f"--trainer.callbacks={early}"))
    names = {type(c).__name__ for c in cli.trainer.callbacks}
    assert "EarlyStopping" in names and "LearningRateMonitor" not in names
    assert cli.trainer.checkpoint_callback.monitor is None  # Lightning's own, not our default
    with pytest.raises(ValueError, match=r"^checkpoint.monitor was renamed: use trainer.callbacks"):
        cli_main(fit_args(tiny_folder, tmp_path / "old", "--checkpoint.monitor=val/loss"))


@pytest.mark.slow
def test_fit_ends_by_fitting_the_compact_projection_into_last_ckpt(tiny_folder, tmp_path):
    """compact_dim: last.ckpt's encoder(images) is the whitened pooled grid of the train split;
    the best-by-val/loss checkpoint (weights it was not fitted on) leaves it unfitted."""
    compact = ["--model.encoder.compact_dim=5", "--model.encoder.pool_size=2"]
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run", *compact))
    last = next((tmp_path / "run").rglob("last.ckpt"))
    encoder = cpc.load_encoder(last)
    assert encoder.compact_projection.fitted
    dm = cli.datamodule
    train = torch.cat([x for x, _ in dm.eval_dataloader("train")]).float() / 255
    with torch.no_grad():
        out = encoder(train)  # (18, 5)
    assert out.shape == (len(train), 5)
    torch.testing.assert_close(torch.cov(out.T), torch.eye(5), atol=1e-3, rtol=0)
    best = [p for p in last.parent.glob("*.ckpt") if p.name != "last.ckpt"]
    assert best and not cpc.load_encoder(best[0]).compact_projection.fitted


@pytest.mark.parametrize("key", ["trainer.logger.save_dir", "trainer.logger.init_args.save_dir"])
def test_the_loggers_save_dir_is_refused_naming_default_root_dir(key, tiny_folder, tmp_path):
    """It follows trainer.default_root_dir (a link): given, it was silently replaced."""
    with pytest.raises(ValueError, match=f"^{key} is set from trainer.default_root_dir .*: use"):
        cli_main(fit_args(tiny_folder, tmp_path / "run", f"--{key}={tmp_path / 'elsewhere'}"))
