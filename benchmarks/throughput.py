"""Training-step throughput of the default model, next to this machine's matmul FLOP rate.

    python benchmarks/throughput.py                       # CPU: fp32 and bf16-mixed
    python benchmarks/throughput.py --device cuda --precision 32 bf16-mixed 16-mixed
    python benchmarks/throughput.py --precision auto --profile   # + the top ops of one step
    python benchmarks/throughput.py --compile                     # torch.compile'd tasks

Times full training steps (patches -> encoder -> tasks -> loss -> backward -> AdamW) on random
images of the configured size, counts their FLOPs with ``torch.utils.flop_counter`` (forward
and backward, :meth:`cpc.module.CPCModule.training_flops`), and prints
a markdown table: images/s, the untimed warm-up steps' seconds (with ``--compile``: the
compilation), achieved GFLOP/s, the measured matmul rate at the same precision
(:func:`cpc.run.throughput.matmul_flops`) and their ratio (what ``train/mfu`` logs in a fit).
Data loading is excluded (the data sits in memory; see the logged ``train/images_per_sec`` for
end-to-end figures). ``--profile`` prints ``torch.profiler``'s table of the ops that took most
time over the timed steps, per precision and input shape: what to optimise first. ``auto`` is
the precision ``--trainer.precision auto`` picks on this machine (:mod:`cpc.run.precision`).
"""

from __future__ import annotations

import os

# as `import cpc` does (cpc/__init__.py), before torch loads: large CPU tensors on huge pages
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import argparse
import contextlib
import time

import torch

from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.run.precision import auto_precision
from cpc.run.throughput import matmul_flops

DTYPES = {"32": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast(device: str, precision: str):
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=DTYPES[precision])


def step_fn(module: CPCModule, optimizer, images, device: str, precision: str, scaler):
    def step() -> None:
        with autocast(device, precision):
            loss = module.shared_step(images, "train")["train/loss"]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def measure(args, precision: str) -> dict[str, float]:
    torch.manual_seed(0)
    encoder = ResNetEncoder(
        in_channels=args.channels, width=args.width, channels_last=args.channels_last
    )
    module = CPCModule(encoder=encoder, compile=args.compile).to(args.device).train()
    module.configure_model()  # compiles the tasks when asked
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    images = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size)
    images = images.to(args.device)
    scaler = torch.amp.GradScaler("cuda") if precision == "16-mixed" else None
    step = step_fn(module, optimizer, images, args.device, precision, scaler)
    flops = module.training_flops(images)  # eager, as the logged train/mfu counts them
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(max(1, args.warmup)):  # the first step compiles (--compile)
        step()
    sync()
    warmup = time.perf_counter() - start
    profiler = profile(args.device) if args.profile else contextlib.nullcontext()
    with profiler:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        seconds = (time.perf_counter() - start) / args.steps
    if args.profile:
        sort = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
        print(f"## precision {precision}: top ops over {args.steps} steps")
        ops = profiler.key_averages(group_by_input_shape=True)  # (3072, 3072) logits apart
        print(ops.table(sort_by=sort, row_limit=args.profile_rows, max_shapes_column_width=60))
    gflops = flops / seconds / 1e9
    reference = matmul_flops(args.device, DTYPES[precision], seconds=2.0) / 1e9
    return {
        "images/s": args.batch_size / seconds,
        "s/step": seconds,
        "warm-up s": warmup,
        "GFLOP/step": flops / 1e9,
        "GFLOP/s": gflops,
        "matmul GFLOP/s": reference,
        "ratio to matmul": gflops / reference,
    }


def profile(device: str) -> torch.profiler.profile:
    """A profiler of the CPU ops (and CUDA kernels on ``cuda``): timings and input shapes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities, record_shapes=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", nargs="+", default=["32", "bf16-mixed"], choices=[*DTYPES, "auto"]
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--width", type=int, default=32, help="ResNetEncoder width")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compile: more)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the tasks")
    parser.add_argument("--profile", action="store_true", help="print the top ops of the steps")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args()
    precisions = [auto_precision(args.device)[0] if p == "auto" else p for p in args.precision]
    rows = {p: measure(args, p) for p in dict.fromkeys(precisions)}
    columns = list(next(iter(rows.values())))
    print(
        f"device={args.device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"image={args.channels}x{args.image_size}x{args.image_size} width={args.width} "
        f"compile={args.compile} THP_MEM_ALLOC_ENABLE={os.environ['THP_MEM_ALLOC_ENABLE']}"
    )
    print("| precision | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for precision, row in rows.items():
        print(f"| {precision} | " + " | ".join(f"{v:.3g}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
