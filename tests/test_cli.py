import torch
from conftest import tiny_fit_args

from cpc.cli import cli_main
from cpc.module import CPCModule


def test_fit_writes_checkpoint_and_resumes(tiny_folder, tmp_path):
    cli = cli_main(tiny_fit_args(tiny_folder, tmp_path / "run"))
    assert cli.trainer.global_step == 2  # 18 train images // batch 8
    logged = cli.trainer.callback_metrics
    assert torch.isfinite(logged["train/loss"]) and torch.isfinite(logged["val/loss"])
    ckpts = sorted((tmp_path / "run").rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert ckpts
    model = CPCModule.load_from_checkpoint(ckpts[-1])  # the CLI stored the whole model config
    assert model.encoder.num_features == 16 and model.tasks["cpc"].steps == (2, 3)

    resume = ["--trainer.max_epochs=2", f"--ckpt_path={ckpts[-1]}"]
    resumed = cli_main(tiny_fit_args(tiny_folder, tmp_path / "run2", *resume))
    assert resumed.trainer.global_step == 4


def test_console_script_exits_zero(monkeypatch):
    import importlib.metadata

    (script,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "cpc"
    ]
    monkeypatch.setattr("cpc.cli.cli_main", lambda: object())
    assert script.load()() is None


def test_checkpointing_can_be_switched_off(tiny_folder, tmp_path):
    cli = cli_main(
        tiny_fit_args(tiny_folder, tmp_path / "run", "--trainer.enable_checkpointing=false")
    )
    assert cli.trainer.global_step == 2 and not list((tmp_path / "run").rglob("*.ckpt"))
