from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cpc.cli import cli_main
from cpc.module import CPCModule


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ["a", "b"]:
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.png")
    return tmp_path / "images"


def fit_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--data=cpc.data.ImageFolderDataModule",
        f"--data.root={folder}",
        "--data.image_size=28",
        "--data.channels=1",
        "--data.batch_size=8",
        "--data.val_size=0.25",
        "--model.encoder=cpc.models.encoder.ResNetEncoder",
        "--model.encoder.width=8",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={out}",
        *extra,
    ]


def test_fit_writes_checkpoint_and_resumes(image_folder, tmp_path):
    cli = cli_main(fit_args(image_folder, tmp_path / "run"))
    assert cli.trainer.global_step == 2  # 18 train images // batch 8
    logged = cli.trainer.callback_metrics
    assert torch.isfinite(logged["train/loss"]) and torch.isfinite(logged["val/loss"])
    ckpts = sorted((tmp_path / "run").rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert ckpts
    model = CPCModule.load_from_checkpoint(ckpts[-1])  # the CLI stored the whole model config
    assert model.encoder.num_features == 16 and model.tasks["cpc"].steps == (2, 3)

    resume = ["--trainer.max_epochs=2", f"--ckpt_path={ckpts[-1]}"]
    resumed = cli_main(fit_args(image_folder, tmp_path / "run2", *resume))
    assert resumed.trainer.global_step == 4


def test_grid_too_small_for_steps_is_one_clear_error(image_folder, tmp_path):
    with pytest.raises(ValueError, match="lower the steps"):
        task = '[{"class_path": "cpc.tasks.CPCTask", "init_args": {"steps": [5, 6]}}]'
        cli_main(fit_args(image_folder, tmp_path / "run", f"--model.tasks={task}"))


def test_console_script_exits_zero(monkeypatch):
    import importlib.metadata

    (script,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "cpc"
    ]
    monkeypatch.setattr("cpc.cli.cli_main", lambda: object())
    assert script.load()() is None
