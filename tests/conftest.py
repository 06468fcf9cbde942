from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# The tests use tiny tensors: one thread avoids oversubscribing the 2 cores (measured 10x faster).
torch.set_num_threads(1)


def write_image_folder(root: Path, classes=("a", "b"), per_class=12, size=28, mode="L") -> Path:
    """A small ImageFolder of random images: ``root/<class>/<i>.png``."""
    rng = np.random.default_rng(0)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """24 random 28x28 grayscale images in two classes."""
    return write_image_folder(tmp_path / "images")


def tiny_fit_args(folder: Path, out: Path, *extra: str) -> list[str]:
    """`cpc fit` on ``tiny_folder`` with a width-8 encoder: 2 steps, no end-of-fit report."""
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
        "--report.enabled=false",
        f"--trainer.default_root_dir={out}",
        *extra,
    ]


def quick_fit_args(folder: Path, out: Path, *extra: str, config: Path | None = None) -> list[str]:
    """``tiny_fit_args`` with one val batch, no logger, no online kNN; a config file first."""
    args = tiny_fit_args(
        folder,
        out,
        "--trainer.limit_val_batches=1",
        "--trainer.logger=false",
        "--online_knn.every_n_epochs=0",
        *extra,
    )
    return [args[0], f"--config={config}", *args[1:]] if config else args
