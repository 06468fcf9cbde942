"""Every shipped config parses, builds its model and trains one step (fast_dev_run)."""

from pathlib import Path

import pytest
import torch
from helpers import fit_args, write_image_folder

from cpc.cli import cli_main

CONFIGS = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))
#: stand-in images (channels, side) for configs whose encoder expects RGB or larger images
STAND_INS = {"cifar10": (3, 32), "stl10": (3, 96), "streaming_example": (3, 96)}
#: configs whose encoder has no ``width`` to narrow (a torchvision ResNet): fewer images and no
#: checkpoint (135 MB with AdamW's state) instead
NO_WIDTH = {
    name: {
        "model.encoder.width": None,
        "data.batch_size": 2,
        "trainer.enable_checkpointing": "false",
    }
    for name in ("stl10", "streaming_example")
}


def test_there_are_configs():
    assert any(c.name == "fashion_mnist.yaml" for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_trains_one_step(config, tmp_path):
    channels, side = STAND_INS.get(config.stem, (1, 28))
    folder = write_image_folder(
        tmp_path / "images", size=side, mode="L" if channels == 1 else "RGB"
    )
    # the config first, then small generated data and a narrow encoder in place of its own
    args = fit_args(
        folder,
        tmp_path / "run",
        f"--data.channels={channels}",
        f"--data.image_size={side}",
        "--trainer.fast_dev_run=true",
        config=config,
        **{"model.encoder": None},  # the config's encoder class, narrowed by width=8
        **NO_WIDTH.get(config.stem, {}),
    )
    cli = cli_main(args)
    assert cli.trainer.global_step == 1
    losses = {k: v for k, v in cli.trainer.callback_metrics.items() if k.endswith("loss")}
    assert "train/loss" in losses and all(torch.isfinite(v) for v in losses.values())


def test_switching_the_context_keeps_its_own_defaults(capsys):
    tasks = (
        '[{"class_path": "cpc.tasks.CPCTask", "init_args": {"context": "cpc.models.GRUContext"}}]'
    )
    with pytest.raises(SystemExit):
        cli_main(["fit", f"--model.tasks={tasks}", "--print_config"])
    printed = capsys.readouterr().out
    context = printed[printed.index("class_path: cpc.models.GRUContext") :]
    assert "layers: 1" in context.split("projection_dim")[0]
