"""Is the streaming pipeline fast enough? Its images/s next to the training step's.

    python benchmarks/data_speed.py                                  # 2000 generated photos
    python benchmarks/data_speed.py --workers 0 1 2 4 --device cuda  # how many workers a GPU needs
    python benchmarks/data_speed.py --stream data/photos_stream      # your prepared stream

Generates ``--images`` random JPEG photos (``--photo-size`` px, under ``--workdir``, reused) and
prepares them as a stream at ``--prepare-size`` (``python -m cpc.data.prepare stream``), unless
``--stream`` names one. Then, with the model and data settings of ``--config``
(``configs/streaming_example.yaml``: 96-px crops, batch 64):

- pipeline: batches/s of ``StreamingDataModule.train_dataloader()`` alone (read, JPEG decode,
  resize, crop, collate in the workers), for each ``--workers`` (``default`` = the module's);
- step: training steps/s of the configured model on such batches (uint8 -> float on the
  device, patches, encoder, tasks, backward, AdamW), data excluded.

A pipeline at >= 1.5x the step rate keeps the model fed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from jsonargparse import ArgumentParser
from PIL import Image

from cpc.data.datamodule import ImageDataModule
from cpc.data.stream_prepare import prepare_stream
from cpc.module import CPCModule


def generate_photos(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` random RGB JPEGs of ``size`` x ``size * 5 // 4`` px (smooth noise, ~photo-sized
    files) in ``folder``; files already there are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = folder / f"{i:07d}.jpg"
        if path.is_file():
            continue
        small = rng.integers(0, 256, (size // 8, size * 5 // 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size * 5 // 4, size), Image.BILINEAR).save(path, quality=90)
    return folder


def build(config: str, stream: str, batch_size: int | None):
    """The model and streaming data module of ``config`` (its ``model`` and ``data``
    sections, read as ``cpc fit`` reads them), reading ``stream``."""
    sections = yaml.safe_load(Path(config).read_text())
    parser = ArgumentParser()
    parser.add_class_arguments(CPCModule, "model")
    model = parser.instantiate(parser.parse_object({"model": sections["model"]})).model
    data = sections["data"]
    data["init_args"] |= {"input_dir": stream, "labelled": None}  # the train loader only
    if batch_size:
        data["init_args"]["batch_size"] = batch_size
    return model, ImageDataModule.from_config(data)


def pipeline_rate(datamodule, workers: int | None, batches: int, warmup: int) -> float:
    """Images/s of the train loader alone, after ``warmup`` batches (worker start-up)."""
    datamodule.num_workers = workers
    loader = datamodule.train_dataloader()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    n = sum(len(next(it)[0]) for _ in range(batches))
    return n / (time.perf_counter() - start)


def step_rate(module, datamodule, device: str, steps: int, warmup: int) -> float:
    """Images/s of training steps on one loader batch, already in memory."""
    images, labels = next(iter(datamodule.train_dataloader()))
    images, _ = datamodule.on_after_batch_transfer((images.to(device), labels), 0)
    module = module.to(device).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step() -> None:
        loss = module.shared_step(images, "train")["train/loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/streaming_example.yaml")
    parser.add_argument("--stream", default=None, help="a prepared stream (default: generate)")
    parser.add_argument("--images", type=int, default=2000, help="photos to generate")
    parser.add_argument("--photo-size", type=int, default=256, help="generated photos' height")
    parser.add_argument("--prepare-size", type=int, default=112, help="stored shorter side")
    parser.add_argument("--workdir", default="/tmp/cpc_data_speed")
    parser.add_argument("--workers", nargs="+", default=["default"], help="int or 'default'")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--batches", type=int, default=20, help="timed loader batches")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    stream = args.stream
    if stream is None:
        work = Path(args.workdir)
        photos = generate_photos(work / f"photos{args.images}", args.images, args.photo_size)
        stream = str(work / f"stream{args.images}_{args.prepare_size}")
        prepare_stream(str(photos), stream, size=args.prepare_size, progress=False)
    module, datamodule = build(args.config, stream, args.batch_size)
    datamodule.setup("fit")
    step = step_rate(module, datamodule, args.device, args.steps, args.warmup)
    size = "x".join(map(str, datamodule.image_size))
    print(f"\n{stream}: {size} crops, batch {datamodule.batch_size}, step on {args.device}")
    print("| loader workers | pipeline images/s | step images/s | pipeline / step |")
    print("| --- | ---: | ---: | ---: |")
    for w in args.workers:
        workers = None if w == "default" else int(w)
        rate = pipeline_rate(datamodule, workers, args.batches, args.warmup)
        label = f"default ({datamodule.loader_workers()})" if workers is None else w
        print(f"| {label} | {rate:.0f} | {step:.0f} | {rate / step:.2f}x |")


if __name__ == "__main__":
    main()
