"""Callbacks that record what a fit did (importable by ``class_path`` from a subprocess)."""

import hashlib
from pathlib import Path

import lightning as L
import torch


class RecordDraws(L.Callback):
    """Append ``<step> <digest>`` to ``<folder>/draws-<rank>.txt`` after every training batch:
    a digest of this rank's torch generator once the batch's augmentations are drawn."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        digest = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"draws-{trainer.global_rank}.txt").open("a") as f:
            f.write(f"{trainer.global_step} {digest}\n")


def read_draws(folder: Path, rank: int) -> list[str]:
    """The lines :class:`RecordDraws` wrote for ``rank``."""
    return (folder / f"draws-{rank}.txt").read_text().splitlines()
