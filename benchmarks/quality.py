"""Feature quality at a fixed wall-clock budget on Fashion-MNIST, over seeds: docs/results.md.

    python benchmarks/quality.py --minutes 20 --seeds 0 1 2 --supervised --precision 32-true
    python benchmarks/quality.py --table                       # print the table of what ran

Each method runs for ``--minutes`` of wall-clock time per seed:

- each config (default ``configs/fashion_mnist.yaml``; several files joined by ``+`` are layered
  in order, as repeated ``--config``: ``configs/fashion_mnist.yaml+configs/tasks/rotation.yaml``,
  named for the last file, ``rotation``) is pretrained without labels on the 55k
  train images (5k held out for validation): a short calibration measures seconds per step, the
  run gets ``max_steps`` to fill the budget (so the cosine schedule ends on time) and
  ``max_time`` as a hard cap;
- with ``--supervised``, two ceilings trained with labels for the same time: the same encoder
  with a linear head on the evaluated features, and a plain small CNN. Both are trained as CPC
  is: the config's batch size, CPCModule's AdamW, learning rate, weight decay and warmup then
  cosine (:class:`cpc.module.WarmupCosine`), and a budget of steps measured as CPC's (median
  seconds per step over the second half of a 16-step fit). The same encoder's augmentation is
  one of ``--supervised-augment``: ``patch`` (CPC's per-patch ``PatchAugment``), ``image``
  (whole-image shift and flip, ``ImageAugment``), ``both``; each is its own row
  (``supervised_same_encoder_<augment>``), and the ceiling is the row with the best validation
  linear top-1 (marked in the table). Choose on one seed, then run the chosen one on the others.

Every model is then evaluated as the end-of-fit report does (:func:`cpc.eval.report.evaluate`):
kNN (k=20, T=0.07) with the train split as memory bank, and a linear probe whose weight decay is
picked on the validation split; test is scored once, on the final model (never a best epoch).
Two features per model: the **best** (``--pooling``, the report's leading row; the whole latent
grid by default) and the **compact** one, what ``encoder(images)`` returns. The random-init
encoder and raw pixels are the baselines. The table shows mean ± std over seeds of the test
top-1 and, in the last columns, the validation top-1 that every choice was made on.

``--from-checkpoints DIR`` re-evaluates earlier pretraining runs instead of training again:
each config's encoder, as the config now builds it (e.g. a new ``compact_dim``), gets the weights
of ``DIR/<method>/seed<k>/**/last.ckpt`` and its compact projection is fitted as ``cpc fit``
does at the end of training; steps and seconds are those of ``DIR/<method>/seed<k>.json``.

Every (method, seed) writes ``<out>/<method>/seed<k>.json`` when it finishes and is skipped
when that file exists, so an interrupted benchmark resumes, and runs can be split over
processes (e.g. one per core: ``taskset -c 0 ... --seeds 0`` and ``taskset -c 1 ... --seeds 1``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from cpc.cli import cli_main
from cpc.data import FashionMNISTDataModule
from cpc.eval.features import compact_fit_features, pool_grid
from cpc.eval.protocol import EvalProtocol
from cpc.eval.report import evaluate, write_report
from cpc.models.augment import ImageAugment, PatchAugment
from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule, WarmupCosine
from cpc.run.precision import auto_precision

#: the supervised same-encoder ceiling's augmentations, chosen on validation
AUGMENTS = ("patch", "image", "both")


class Supervised(L.LightningModule):
    """A ceiling: ``encoder`` trained with labels and a linear head on its pooled grid, with
    CPCModule's optimiser and schedule (AdamW, warmup then cosine to 0 over the fit's steps).

    Args:
        augment: ``"patch"`` (CPC's ``PatchAugment`` on the encoder's patches), ``"image"``
            (``ImageAugment``: whole-image shift and flip) or ``"both"``.
        lr, weight_decay, warmup_steps: as :class:`cpc.module.CPCModule`'s.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head_in: int,
        num_classes: int,
        pooling: str,
        augment: str = "image",
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
    ) -> None:
        super().__init__()
        if augment not in AUGMENTS:
            raise ValueError(f"unknown augment {augment!r}: choose from {', '.join(AUGMENTS)}")
        if augment != "image" and not hasattr(encoder, "patchify"):
            raise ValueError(f"augment {augment!r} needs a patch encoder; use 'image'")
        self.encoder, self.pooling = encoder, pooling
        self.head = nn.Linear(head_in, num_classes)
        self.image_augment = ImageAugment() if augment in ("image", "both") else nn.Identity()
        self.patch_augment = PatchAugment() if augment in ("patch", "both") else None
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return pool_grid(self.encoder.forward_features(images), self.pooling)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        images = self.image_augment(images)
        if self.patch_augment is None:
            grid = self.encoder.forward_features(images)
        else:  # (B, Gh, Gw, C, P, P) augmented per patch, as CPCTask does
            grid = self.encoder.encode_grid(self.patch_augment(self.encoder.patchify(images)))
        loss = F.cross_entropy(self.head(pool_grid(grid, self.pooling)), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):  # CPCModule.configure_optimizers
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)
        schedule = WarmupCosine(min(self.warmup_steps, total // 2), total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class StepTimes(L.Callback):
    """``perf_counter()`` at the end of every training batch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        """Median step time over the second half of the steps, as :func:`seconds_per_step`
        reads CPC's (ThroughputMonitor's window of half the steps)."""
        half = self.times[len(self.times) // 2 - 1 :]
        return statistics.median(b - a for a, b in zip(half, half[1:], strict=False))


class SmallCNN(nn.Module):
    """A plain supervised CNN for 28x28 images (three 3x3 conv blocks, GroupNorm, max-pool),
    shaped like an encoder so the report can score it: its 128-d penultimate feature is a 1x1
    "grid"."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.GroupNorm(8, cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.GroupNorm(8, cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(
            block(in_channels, width), block(width, 2 * width), block(2 * width, 4 * width)
        )  # 28 -> 14 -> 7 -> 3
        self.num_features = self.compact_features = 4 * width

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, 28, 28)`` -> ``(B, 4w, 1, 1)``: global average of the last block."""
        return self.body(images * 2 - 1).mean(dim=(2, 3), keepdim=True)

    def pool(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flatten(1)  # (B, 4w, 1, 1) -> (B, 4w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(images))


def seconds_per_step(args: list[str], out: Path, steps: int = 16) -> float:
    """Median seconds per step of a short fit of the same config (data loading included)."""
    calibration = cli_main(
        [
            *args,
            f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=0",
            "--report.enabled=false",
            "--online_knn.every_n_epochs=0",
            "--trainer.log_every_n_steps=1",
            f"--throughput.window_size={steps // 2}",  # rates from the second half of the steps
            f"--trainer.default_root_dir={out}",
        ]
    )
    with open(Path(calibration.trainer.logger.log_dir) / "metrics.csv") as f:
        rates = [
            float(r["train/images_per_sec"])
            for r in csv.DictReader(f)
            if r.get("train/images_per_sec")
        ]
    if not rates:
        raise RuntimeError(f"the calibration fit logged no train/images_per_sec in {f.name}")
    return calibration.datamodule.batch_size / statistics.median(rates)


def pretrain(
    config: str,
    minutes: float,
    out: Path,
    protocol: EvalProtocol,
    seed: int,
    baselines: bool,
    precision: str | None = None,
) -> dict:
    """Pretrain ``config`` for ``minutes`` (at ``precision``, else the config's), then evaluate
    it (and the baselines)."""
    args = [
        "fit",
        *(f"--config={c}" for c in config.split("+")),
        *([f"--trainer.precision={precision}"] if precision else []),
        "--data.root=data",
        "--trainer.enable_progress_bar=false",
        f"--seed_everything={seed}",
    ]
    per_step = seconds_per_step(args, out / "calibration")
    steps = int(0.9 * minutes * 60 / per_step)  # ~10% of the budget for validation between epochs
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
    report = evaluate(
        cli.model.encoder, cli.datamodule, protocol, baselines=baselines, progress=False
    )
    report["meta"].update(train_seconds=round(seconds), steps=cli.trainer.global_step)
    return report


def supervised(
    encoder: nn.Module,
    head_in: int,
    pooling: str,
    minutes: float,
    protocol: EvalProtocol,
    seed: int,
    config: str,
    augment: str = "image",
    precision: str | None = None,
) -> dict:
    """Train ``encoder`` with labels for ``minutes`` as ``config``'s CPC is trained (its batch
    size, optimiser, schedule, steps measured alike; ``precision``, else the config's), then
    evaluate it."""
    data = FashionMNISTDataModule(root="data", **config_section(config, "data"))
    defaults = {
        name: p.default
        for name, p in inspect.signature(CPCModule).parameters.items()
        if name in ("lr", "weight_decay", "warmup_steps")
    }
    model_section = (yaml.safe_load(Path(config).read_text()) or {}).get("model") or {}
    optim = {**defaults, **{k: v for k, v in model_section.items() if k in defaults}}
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    precision = {"precision": precision or compute_precision(config)}
    L.seed_everything(seed)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    timer = StepTimes()  # a cosine over the budget needs its length in steps
    probe = Supervised(encoder, head_in, data.num_classes, pooling, augment, **optim)
    L.Trainer(max_steps=16, limit_val_batches=0, callbacks=[timer], **quiet, **precision).fit(
        probe, datamodule=data
    )
    per_step = timer.seconds_per_step()
    encoder.load_state_dict(state)
    L.seed_everything(seed)
    model = Supervised(encoder, head_in, data.num_classes, pooling, augment, **optim)
    trainer = L.Trainer(
        max_steps=int(0.9 * minutes * 60 / per_step),  # as pretrain()
        max_epochs=-1,
        max_time={"minutes": minutes},
        limit_val_batches=0,
        **quiet,
        **precision,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    report = evaluate(model.encoder, data, protocol, baselines=False, progress=False)
    report["meta"].update(
        train_seconds=round(seconds), steps=trainer.global_step, augment=augment, **optim
    )
    return report


def compute_precision(config: str) -> str:
    """The precision ``cpc fit`` trains ``config`` with (its ``trainer.precision``, resolved as
    :class:`cpc.cli` resolves ``auto``)."""
    section = yaml.safe_load(Path(config).read_text()) or {}
    precision = str((section.get("trainer") or {}).get("precision", "auto"))
    if precision != "auto":
        return precision
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return auto_precision(device)[0]


def reevaluate(config: str, run_dir: Path, protocol: EvalProtocol, baselines: bool) -> dict:
    """Evaluate the ``last.ckpt`` under ``run_dir`` with the encoder ``config`` builds now."""
    ckpt = next(run_dir.rglob("last.ckpt"))
    encoder = config_encoder(config)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("compact_projection.") for k in missing):
        raise ValueError(f"{ckpt} does not fit {config}: missing {missing}, extra {unexpected}")
    data = FashionMNISTDataModule(root="data", **config_section(config, "data"))
    encoder.fit_compact(compact_fit_features(encoder, data))  # as at the end of `cpc fit`
    report = evaluate(encoder, data, protocol, baselines=baselines, progress=False)
    trained = json.loads(run_dir.with_suffix(".json").read_text())["meta"]
    report["meta"].update(
        train_seconds=trained["train_seconds"], steps=trained["steps"], checkpoint=str(ckpt)
    )
    return report


def run(method: str, seed: int, args: argparse.Namespace, protocol: EvalProtocol) -> dict:
    config = args.configs[0]
    if method.startswith("supervised_same_encoder_"):
        augment = method.removeprefix("supervised_same_encoder_")
        encoder = config_encoder(config)
        grid = encoder.forward_features(torch.zeros(1, encoder.in_channels, 28, 28))
        head_in = pool_grid(grid, protocol.pooling).shape[1]
        return supervised(
            encoder,
            head_in,
            protocol.pooling,
            args.minutes,
            protocol,
            seed,
            config,
            augment,
            args.precision,
        )
    if method == "supervised_small_cnn":
        cnn = SmallCNN()
        plain = dataclasses.replace(protocol, compact=False)  # its 128-d feature only
        return supervised(
            cnn,
            cnn.num_features,
            "mean",
            args.minutes,
            plain,
            seed,
            config,
            "image",
            args.precision,
        )
    config = next(c for c in args.configs if method_name(c) == method)
    # the baselines do not depend on the pretraining seed: computed with one seed only
    baselines = seed == args.baselines_seed
    if args.from_checkpoints:
        run_dir = args.from_checkpoints / method / f"seed{seed}"
        return reevaluate(config, run_dir, protocol, baselines)
    out = args.out / method / f"seed{seed}"
    return pretrain(config, args.minutes, out, protocol, seed, baselines, args.precision)


def method_name(config: str) -> str:
    """``a.yaml+tasks/b.yaml`` -> ``b``: a config is named for its last file."""
    return Path(config.split("+")[-1]).stem


def config_section(config: str, *keys: str) -> dict:
    """The ``init_args`` under ``keys`` (``"model", "encoder"``) of a config, its ``+``-joined
    files merged in order (a later file's values win), or ``{}``."""
    merged: dict = {}
    for path in config.split("+"):
        section = yaml.safe_load(Path(path).read_text()) or {}
        for key in keys:
            section = section.get(key) or {}
        merged.update(section.get("init_args", {}))
    return merged


def config_encoder(config: str) -> ResNetEncoder:
    """The ``ResNetEncoder`` a config builds (its ``model.encoder.init_args``), at random init."""
    return ResNetEncoder(**config_section(config, "model", "encoder"))


def summarize(out: Path) -> str:
    """Markdown table of every ``<out>/<method>/seed*.json``: mean ± std over seeds."""
    rows = []
    baselines: dict[str, list[dict]] = {}
    for method_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        reports = [json.loads(p.read_text()) for p in sorted(method_dir.glob("seed*.json"))]
        if not reports:
            continue
        for key, label in (("encoder", "best"), ("encoder_compact", "compact")):
            same = key == "encoder_compact" and reports[0].get(key) == reports[0]["encoder"]
            if key in reports[0] and not same:  # a plain CNN's only feature is both
                rows.append((f"{method_dir.name} ({label})", [r[key] for r in reports], reports))
        for key in ("random_init", "random_init_compact", "pixels"):
            for report in reports:
                if key in report and key not in baselines:
                    baselines[key] = [report[key]]
    lines = [
        "| features | seeds | steps | dim | kNN top-1 | linear top-1 | val kNN | val linear |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(values: list[float], scale: float = 100, digits: int = 2) -> str:
        values = [scale * v for v in values]
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    def line(name: str, results: list[dict], reports: list[dict] | None, dim) -> str:
        steps = "-" if reports is None else cell([r["meta"]["steps"] for r in reports], 1, 0)
        return (
            f"| {name} | {len(results)} | {steps} | {dim} "
            f"| {cell([r['knn']['top1'] for r in results])} "
            f"| {cell([r['linear']['top1'] for r in results])} "
            f"| {cell([r['knn'].get('val_top1', float('nan')) for r in results])} "
            f"| {cell([r['linear']['val_top1'] for r in results])} |"
        )

    ceilings = [r for r in rows if r[0].startswith("supervised_same_encoder_") and "(best)" in r[0]]
    if ceilings:  # the ceiling: the augmentation with the best mean val linear top-1
        chosen = max(ceilings, key=lambda r: statistics.mean(x["linear"]["val_top1"] for x in r[1]))
        rows = [(f"{r[0]} ← best val" if r is chosen else r[0], *r[1:]) for r in rows]
    for name, results, reports in rows:
        meta = reports[0]["meta"]
        dim = meta["compact_dim"] if name.endswith("(compact)") else meta["feature_dim"]
        lines.append(line(name, results, reports, dim))
    for key, results in baselines.items():
        lines.append(line(key.replace("_", " "), results, None, "-"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument(
        "--configs",
        nargs="*",
        default=["configs/fashion_mnist.yaml"],
        help="config files; 'full.yaml+tasks/fragment.yaml' layers a task fragment on a config",
    )
    parser.add_argument("--supervised", action="store_true", help="add the supervised ceilings")
    parser.add_argument("--only", nargs="*", default=None, help="run only these methods")
    parser.add_argument(
        "--supervised-augment",
        nargs="+",
        default=list(AUGMENTS),
        choices=AUGMENTS,
        help="the same-encoder ceiling's augmentations to train (the best on val is the ceiling)",
    )
    parser.add_argument("--pooling", default="full", choices=["mean", "grid", "full"])
    parser.add_argument("--knn-pca", type=int, default=512, help="see EvalProtocol.knn_pca")
    parser.add_argument(
        "--precision", default=None, help="e.g. 32-true; default: the config's (auto: this machine)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baselines-seed", type=int, default=0, help="seed run with baselines")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument(
        "--from-checkpoints", type=Path, default=None, help="re-evaluate the runs of this --out"
    )
    args = parser.parse_args()

    protocol = EvalProtocol(pooling=args.pooling, knn_pca=args.knn_pca)
    methods = [method_name(c) for c in args.configs]
    if args.supervised:
        methods += [f"supervised_same_encoder_{a}" for a in args.supervised_augment]
        methods += ["supervised_small_cnn"]
    if args.only:
        methods = [m for m in methods if m in args.only]
    for method in [] if args.table else methods:
        for seed in args.seeds:
            path = args.out / method / f"seed{seed}.json"
            if not path.exists():
                write_report(run(method, seed, args, protocol), path)
    print(
        f"Fashion-MNIST test top-1 (mean ± std over seeds), {args.minutes:g} min of training per "
        "run; val = the 5k validation images every choice was made on"
    )
    print(summarize(args.out))


if __name__ == "__main__":
    main()
