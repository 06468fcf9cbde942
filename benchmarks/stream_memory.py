"""Bounded memory: peak RSS of a streaming training run with 5k and 50k images (same ~RSS).

    python benchmarks/stream_memory.py                        # 5000 and 50000 images
    python benchmarks/stream_memory.py --sizes 5000 50000 --in-memory   # + the in-memory loader

For each size N: generates N random JPEG photos (reused from ``--workdir``), prepares them as a
stream at ``--size`` px, then runs one epoch of ``cpc fit`` with ``cpc.data.StreamingDataModule``
(a width-8 encoder, every image read once) in a subprocess, sampling every 0.1 s the resident
memory of its main process and of the whole process tree (main + loader workers). With
``--in-memory``, the same folder is also trained from ``cpc.data.ImageFolderDataModule``, which
decodes every image into RAM: its RSS grows with N. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import psutil
from data_speed import generate_photos

from cpc.data.stream_prepare import prepare_stream


def peak_rss(command: list[str], interval: float = 0.1) -> tuple[float, float, float]:
    """Run ``command``; ``(peak main RSS MB, peak tree RSS MB, seconds)``."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        try:
            rss = main.memory_info().rss
            tree = rss + sum(c.memory_info().rss for c in main.children(recursive=True))
        except psutil.Error:  # a process ended between the listing and the reading
            continue
        peak_main, peak_tree = max(peak_main, rss), max(peak_tree, tree)
        time.sleep(interval)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr.read()[-2000:]}")
    return peak_main / 2**20, peak_tree / 2**20, time.perf_counter() - start


def fit_command(data: list[str], size: int, batch_size: int, workdir: Path) -> list[str]:
    return [
        sys.executable, "-m", "cpc.cli", "fit", *data,
        f"--data.image_size={size}", f"--data.batch_size={batch_size}",
        "--model.encoder.in_channels=3", "--model.encoder.width=8",
        "--trainer.max_epochs=1", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        "--report.enabled=false", "--online_knn.every_n_epochs=0",
        f"--trainer.default_root_dir={workdir / 'runs'}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--size", type=int, default=32, help="stored and trained image side")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: auto)")
    parser.add_argument("--in-memory", action="store_true", help="also the in-memory loader")
    parser.add_argument("--workdir", default="/tmp/cpc_stream_memory")
    args = parser.parse_args()

    work = Path(args.workdir)
    rows = []
    for n in args.sizes:
        photos = generate_photos(work / f"photos{n}" / "all", n, size=2 * args.size)
        stream = work / f"stream{n}_{args.size}"
        prepare_stream(str(photos), str(stream), size=args.size, progress=False)
        workers = [] if args.workers is None else [f"--data.num_workers={args.workers}"]
        data = ["--data=cpc.data.StreamingDataModule", f"--data.input_dir={stream}", *workers]
        cmd = fit_command(data, args.size, args.batch_size, work)
        rows.append(("stream", n, *peak_rss(cmd)))
        if args.in_memory:
            data = ["--data=cpc.data.ImageFolderDataModule", f"--data.root={photos.parent}"]
            data += ["--data.val_size=0", *workers]
            cmd = fit_command(data, args.size, args.batch_size, work)
            rows.append(("in memory", n, *peak_rss(cmd)))
    print(f"\none epoch, {args.size}x{args.size} RGB, batch {args.batch_size}, width-8 encoder")
    print("| loader | images | peak RSS main (MB) | peak RSS with workers (MB) | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for loader, n, main_mb, tree_mb, seconds in rows:
        print(f"| {loader} | {n} | {main_mb:.0f} | {tree_mb:.0f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
