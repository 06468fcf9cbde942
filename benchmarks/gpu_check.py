"""Short fits at every precision, compiled and not, on one device: one markdown table.

    python benchmarks/gpu_check.py                        # CUDA: 200 steps, batch 512
    python benchmarks/gpu_check.py --device cpu --steps 20 --precision 32 --compile false
    python benchmarks/gpu_check.py -- --data.root /elsewhere    # after --: more `cpc fit` options

Each row is one ``cpc fit --config configs/fashion_mnist.yaml`` of ``--steps`` steps (no
validation, no checkpoints) in this process. Columns: the last logged ``train/images_per_sec``
and ``train/mfu`` (rolling over the last ``--window`` steps, so a compiled row's warm-up is
left out; the MFU is against the measured matmul rate at that precision, printed below the
table), the fit's wall time (compilation included), the peak memory (CUDA: allocated by torch
on the device; CPU: the process's peak RSS so far) next to the step's peak that
``cpc fit`` estimated before the first step (:func:`cpc.run.step_memory.step_bytes`, which refuses
batches that do not fit: its constants were fitted on CPU RSS, this column checks them on the
GPU), and the end-of-fit report's seconds for the
rows of ``--report-precisions`` when compile is off (the baselines' features are cached after
the first). ``benchmarks/gpu_check.sh`` runs it on a fresh machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cpc.cli import cli_main
from cpc.eval.callbacks import EvaluationReport
from cpc.run.step_memory import step_bytes, step_shape
from cpc.run.throughput import compute_dtype, matmul_flops

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    "precision",
    "compile",
    "images/s",
    "MFU %",
    "fit s",
    "peak memory GB",
    "estimated step GB",
    "report s",
]


def fit_row(args: argparse.Namespace, precision: str, compile: bool, extra: list[str]) -> dict:
    """One fit; its numbers for the table."""
    report = compile is False and precision in args.report_precisions
    name = f"{precision}-compile{int(compile)}"
    fit = [
        "fit",
        f"--config={args.config}",
        f"--trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
        f"--trainer.precision={precision}",
        f"--trainer.max_steps={args.steps}",
        "--trainer.max_epochs=-1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.log_every_n_steps={max(1, min(10, args.steps // 2))}",
        f"--trainer.default_root_dir={args.out / name}",
        f"--throughput.window_size={args.window}",
        "--online_knn.every_n_epochs=0",
        f"--report.enabled={str(report).lower()}",
        f"--model.compile={str(compile).lower()}",
        *([f"--data.batch_size={args.batch_size}"] if args.batch_size else []),
        *extra,
    ]
    torch._dynamo.reset()  # each compiled row compiles afresh
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    cli = cli_main(fit)
    seconds = time.perf_counter() - start
    last = last_logged(Path(cli.trainer.logger.log_dir) / "metrics.csv")
    reporter = next(c for c in cli.trainer.callbacks if isinstance(c, EvaluationReport))
    report_s = None
    if report and reporter.path is not None:
        report_s = json.loads(reporter.path.read_text())["meta"]["seconds"]
    return {
        "precision": cli.trainer.precision,
        "compile": compile,
        "images/s": last.get("train/images_per_sec"),
        "MFU %": None if "train/mfu" not in last else 100 * last["train/mfu"],
        "fit s": seconds,
        "peak memory GB": peak_memory_gb(args.device),
        "estimated step GB": estimated_step_gb(cli.model, cli.datamodule),
        "report s": report_s,
    }


def write_table(folder: Path, header: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text(header + "\n".join(lines) + "\n")
    return folder / "table.md"


def last_logged(path: Path) -> dict[str, float]:
    """The last value of every column of a ``metrics.csv``."""
    last: dict[str, float] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            last.update({key: float(value) for key, value in row.items() if value})
    return last


def peak_memory_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def estimated_step_gb(model: Any, datamodule: Any) -> float | None:
    """The step peak ``cpc fit`` estimated before its first step (None when not estimable)."""
    shape = step_shape(model, datamodule)
    return None if shape is None else step_bytes(shape) / 1e9


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 512 on CUDA")
    parser.add_argument("--window", type=int, default=None, help="default: steps // 2")
    parser.add_argument("--precision", nargs="+", default=["32", "bf16-mixed", "16-mixed"])
    parser.add_argument("--compile", nargs="+", default=["false", "true"])
    parser.add_argument("--report-precisions", nargs="*", default=["bf16-mixed"])
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    args = parser.parse_args(argv)
    if args.batch_size is None and args.device == "cuda":
        args.batch_size = 512
    args.window = args.window or max(2, args.steps // 2)
    args.compile = [value.lower() in ("true", "1", "on") for value in args.compile]
    return args, extra


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the table (a row as each fit ends); returns the rows."""
    args, extra = parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    header = (
        f"{name}, torch {torch.__version__}, {args.steps} steps, batch "
        f"{args.batch_size or 'of the config'}, rates over the last {args.window} steps\n\n"
    )
    print("\n" + header, end="")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    print("\n".join(lines), flush=True)
    rows = []
    for precision in args.precision:
        for compile in args.compile:
            try:
                row = fit_row(args, precision, compile, extra)
            except Exception as err:  # one failing row (e.g. no fp16 here) keeps the others
                row = {"precision": precision, "compile": compile, "images/s": f"failed: {err!r}"}
            rows.append(row)
            lines.append("| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |")
            print(lines[-1], flush=True)
            write_table(args.out, header, lines)  # after every row: a timeout keeps the rows
    peaks = ", ".join(
        f"{p} {matmul_flops(args.device, compute_dtype(p), seconds=1.0) / 1e9:,.0f}"
        for p in args.precision
    )
    lines += ["", f"matmul rate (GFLOP/s, measured; the MFU's reference): {peaks}"]
    print(lines[-1])
    print(f"table written to {write_table(args.out, header, lines)}")
    return rows


if __name__ == "__main__":
    main()
