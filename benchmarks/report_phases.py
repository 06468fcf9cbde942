"""Where the end-of-fit report's seconds and memory go: ``cpc eval`` with a timer per phase.

    python benchmarks/report_phases.py --ckpt_path runs/.../checkpoints/last.ckpt --progress false

Takes ``cpc eval``'s arguments. Wraps the report's phases (feature extraction, the kNN's index
and search, the linear probe) and prints, per phase: calls, wall seconds, CPU seconds (the
process's, so a busy machine inflates wall time far more than CPU time: compare runs by CPU
shares), and the peak RSS seen while the phase ran (sampled every 20 ms). Run it twice with the
same ``$CPC_CACHE``: the second run scores only the trained encoder (baselines cached).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable

import cpc.eval.baselines as baselines
import cpc.eval.report as report
import cpc.eval.scorer as scorer
from cpc.cli import eval_main
from cpc.eval.knn import KNN

#: (phase, owner, attribute): the functions each phase times, where their callers look them up
PHASES = [
    ("extract_splits", report, "extract_splits"),
    ("extract_splits", baselines, "extract_splits"),
    ("knn fit", KNN, "fit"),
    ("knn accuracy", KNN, "accuracy"),
    ("linear_probe", scorer, "linear_probe"),
]
totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
peak_mb: dict[str, int] = collections.defaultdict(int)
running = ["(between phases)"]


def rss_mb() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) // 1024


def sample_rss() -> None:
    while True:
        peak_mb[running[-1]] = max(peak_mb[running[-1]], rss_mb())
        time.sleep(0.02)


def timed(name: str, fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        running.append(name)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            running.pop()
            total = totals[name]
            total[0] += 1
            total[1] += time.perf_counter() - wall
            total[2] += time.process_time() - cpu

    return wrapper


def main() -> None:
    for name, owner, attribute in PHASES:
        setattr(owner, attribute, timed(name, getattr(owner, attribute)))
    threading.Thread(target=sample_rss, daemon=True).start()
    wall, cpu = time.perf_counter(), time.process_time()
    eval_main(sys.argv[1:])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print("| phase | calls | wall s | CPU s | CPU share | peak RSS MB |\n|---|---|---|---|---|---|")
    for name, (calls, seconds, cpu_seconds) in totals.items():
        share = 100 * cpu_seconds / cpu
        row = f"| {name} | {calls} | {seconds:.1f} | {cpu_seconds:.1f} | {share:.0f}%"
        print(f"{row} | {peak_mb[name]} |")
    print(f"| (between phases) | | | | | {peak_mb['(between phases)']} |")
    print(f"| cpc eval, all | | {wall:.1f} | {cpu:.1f} | 100% | {max(peak_mb.values())} |")


if __name__ == "__main__":
    main()
