"""Every shipped config parses, builds its model and trains one step (fast_dev_run)."""

from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args

from cpc.cli import cli_main

CONFIGS = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))


def test_there_are_configs():
    assert any(c.name == "fashion_mnist.yaml" for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_trains_one_step(config, tiny_folder, tmp_path):
    # the config first, then the tiny data and encoder in place of its own
    args = tiny_fit_args(tiny_folder, tmp_path / "run", "--trainer.fast_dev_run=true")
    cli = cli_main([args[0], f"--config={config}", *args[1:]])
    assert cli.trainer.global_step == 1
    losses = {k: v for k, v in cli.trainer.callback_metrics.items() if k.endswith("loss")}
    assert "train/loss" in losses and all(torch.isfinite(v) for v in losses.values())
