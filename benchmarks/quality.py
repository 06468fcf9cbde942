"""Feature quality at a fixed wall-clock budget: kNN and linear probe on Fashion-MNIST's test set.

    python benchmarks/quality.py --minutes 20                        # CPC, the README table
    python benchmarks/quality.py --minutes 20 --configs configs/fashion_mnist.yaml \
        configs/rotation.yaml configs/patch_position.yaml configs/cpc_patch_position.yaml \
        --supervised

Each config is pretrained without labels on the 55k train images (5k held out for validation)
for ``--minutes`` of wall-clock time: a short calibration measures seconds per step, the run
gets ``max_steps`` to fill the budget (so the cosine schedule ends on time) and ``max_time`` as a
hard cap. Then the frozen encoder is evaluated exactly as ``cpc eval`` does
(:func:`cpc.eval.report.evaluate_encoder`): kNN (k=20, T=0.07) with the train split as memory
bank, and a linear probe with weight decay picked on the validation split, both reported once
on the 10k test images: the final model, never a best epoch chosen on test.

Baselines, computed the same way: raw pixels, the encoder at random initialisation and, with
``--supervised``, the same encoder trained with labels (cross entropy) for the same budget: the
ceiling. Prints a markdown table and writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cpc.cli import cli_main
from cpc.data import FashionMNISTDataModule
from cpc.eval.features import pool_grid
from cpc.eval.report import evaluate_encoder, write_report
from cpc.models.augment import ImageAugment
from cpc.models.encoder import ResNetEncoder


class Supervised(L.LightningModule):
    """The ceiling: the same encoder and augmentation, trained with labels.

    The head sees the features the evaluation uses (``pooling``). With a head on mean-pooled
    patch features (a bag of patches) it reached only 48% val accuracy after 80 steps of 256,
    and its 2-minute features scored below the random-init encoder.
    """

    def __init__(
        self, encoder: nn.Module, num_classes: int, pooling: str = "grid", lr: float = 2e-3
    ) -> None:
        super().__init__()
        self.encoder, self.lr, self.pooling = encoder, lr, pooling
        with torch.no_grad():  # the head's input size: pool one blank image's grid
            grid = encoder.forward_features(torch.zeros(1, encoder.in_channels, 28, 28))
        self.head = nn.Linear(pool_grid(grid, pooling).shape[1], num_classes)
        self.augment = ImageAugment()

    def training_step(self, batch, batch_idx):
        images, labels = batch
        grid = self.encoder.forward_features(self.augment(images))  # (B, D, G, G)
        loss = F.cross_entropy(self.head(pool_grid(grid, self.pooling)), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        total = max(1, self.trainer.max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def seconds_per_step(args: list[str], out: Path, steps: int = 16) -> float:
    """Median seconds per step of a short fit of the same config (data loading included)."""
    calibration = cli_main(
        [
            *args,
            f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=0",
            "--report.enabled=false",
            "--online_knn.every_n_epochs=0",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            "--trainer.log_every_n_steps=1",
            f"--trainer.default_root_dir={out}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    with open(Path(calibration.trainer.logger.log_dir) / "metrics.csv") as f:
        rates = [
            float(r["train/images_per_sec"])
            for r in csv.DictReader(f)
            if r.get("train/images_per_sec")
        ]
    return calibration.datamodule.batch_size / statistics.median(rates)


def pretrain(
    config: str, minutes: float, out: Path, baselines: bool, pooling: str, seed: int
) -> dict:
    args = [
        "fit",
        f"--config={config}",
        "--data.root=data",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={seed}",
    ]
    per_step = seconds_per_step(args, out / "calibration")
    # leave ~10% of the budget for validation and the online kNN between epochs
    steps = int(0.9 * minutes * 60 / per_step)
    start = time.perf_counter()
    cli = cli_main(
        [
            *args,
            f"--trainer.max_steps={steps}",
            "--trainer.max_epochs=-1",
            f"--trainer.max_time=00:00:{int(minutes):02d}:{int(minutes % 1 * 60):02d}",
            f"--trainer.default_root_dir={out}",
            "--report.enabled=false",
        ]
    )
    seconds = time.perf_counter() - start
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    report = evaluate_encoder(
        cli.model.encoder,
        cli.datamodule,
        baselines=baselines,
        pooling=pooling,
        progress=False,
        checkpoint_path=str(ckpt),
    )
    report["meta"].update(train_seconds=round(seconds), steps=cli.trainer.global_step)
    return report


def supervised(minutes: float, out: Path, pooling: str) -> dict:
    L.seed_everything(0)
    data = FashionMNISTDataModule(root="data")
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    # a cosine over the budget needs its length in steps: time a short run first
    start = time.perf_counter()
    L.Trainer(max_steps=12, limit_val_batches=0, **quiet).fit(
        Supervised(ResNetEncoder(), data.num_classes, pooling), datamodule=data
    )
    per_step = (time.perf_counter() - start) / 12  # includes start-up: errs on the short side
    model = Supervised(ResNetEncoder(), data.num_classes, pooling)
    trainer = L.Trainer(
        max_steps=int(0.95 * minutes * 60 / per_step),
        max_time={"minutes": minutes},
        limit_val_batches=0,
        default_root_dir=out,
        **quiet,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    report = evaluate_encoder(model.encoder, data, baselines=False, pooling=pooling, progress=False)
    report["meta"].update(train_seconds=round(seconds), steps=trainer.global_step)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument("--configs", nargs="*", default=["configs/fashion_mnist.yaml"])
    parser.add_argument("--supervised", action="store_true", help="add the supervised ceiling")
    parser.add_argument("--pooling", default="full", choices=["mean", "grid", "full"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the pretraining runs")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    args = parser.parse_args()

    results: dict[str, dict] = {}
    for i, config in enumerate(args.configs):
        name = Path(config).stem
        results[name] = pretrain(
            config, args.minutes, args.out / name, i == 0, args.pooling, args.seed
        )
        write_report(results, args.out / "results.json")
    if args.supervised:
        results["supervised"] = supervised(args.minutes, args.out / "supervised", args.pooling)
        write_report(results, args.out / "results.json")

    rows, baselines = [], []
    for name, report in results.items():
        meta = report["meta"]
        rows.append((name, report["encoder"], meta["train_seconds"], meta["steps"]))
        if "pixels" in report:
            baselines = [
                ("random-init encoder", report["random_init"]),
                ("raw pixels", report["pixels"]),
            ]
    print(
        f"Fashion-MNIST test set, budget {args.minutes:g} min per run, "
        f"{torch.get_num_threads()} threads, {args.pooling} pooling"
    )
    print("| method | train s | steps | kNN top-1 | kNN top-5 | linear top-1 | linear top-5 |")
    print("|---|---|---|---|---|---|---|")
    for name, r, seconds, steps in rows + [(n, r, "-", "-") for n, r in baselines]:
        print(
            f"| {name} | {seconds} | {steps} | {100 * r['knn']['top1']:.2f} | "
            f"{100 * r['knn']['top5']:.2f} | {100 * r['linear']['top1']:.2f} | "
            f"{100 * r['linear']['top5']:.2f} |"
        )


if __name__ == "__main__":
    main()
