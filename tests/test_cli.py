import re
from pathlib import Path

import pytest
import torch
from helpers import fit_args

import cpc
from cpc.cli import cli_main
from cpc.module import CPCModule


def test_fit_writes_checkpoint_and_resumes(tiny_folder, tmp_path):
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run"))
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


def test_console_script_exits_zero(monkeypatch):
    import importlib.metadata

    (script,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "cpc"
    ]
    monkeypatch.setattr("cpc.cli.cli_main", lambda: object())
    assert script.load()() is None


def test_checkpointing_can_be_switched_off(tiny_folder, tmp_path):
    cli = cli_main(fit_args(tiny_folder, tmp_path / "run", "--trainer.enable_checkpointing=false"))
    assert cli.trainer.global_step == 2 and not list((tmp_path / "run").rglob("*.ckpt"))


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


def test_cpc_touches_no_private_lightning_api():
    """No override of LightningCLI/Trainer internals, no caller-frame inspection, no
    Lightning-private hparams attributes."""
    sources = {p: p.read_text() for p in Path(cpc.__file__).parent.rglob("*.py")}
    for pattern in (r"def _instantiate_trainer", r"\._hparams", r"currentframe", r"_share_version"):
        offenders = [str(p) for p, text in sources.items() if re.search(pattern, text)]
        assert not offenders, f"{pattern} in {offenders}"


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
