import csv
from types import SimpleNamespace

import pytest
import torch
from helpers import fit_args
from torch.utils.flop_counter import FlopCounterMode

import cpc.run.throughput as throughput
from cpc.cli import cli_main
from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.run.throughput import ThroughputMonitor, compute_dtype, matmul_flops

#: the peak FLOP/s given to the fits (not measured: the MFU is then exact arithmetic)
PEAK = 1e9


def test_matmul_probe_is_the_flops_of_its_runs_over_their_time(monkeypatch):
    """A fake clock 0.25 s later at every reading: the start, then one reading after each run
    until 0.6 s have passed (3 runs), then the end: 2 * 1024**3 FLOPs a run, over 1 s."""
    ticks = iter(0.25 * i for i in range(1, 100))
    monkeypatch.setattr(throughput, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    runs, elapsed = 3, 1.25 - 0.25
    assert matmul_flops("cpu", torch.float32, seconds=0.6) == 2 * 1024**3 * runs / elapsed


def test_compute_dtype_of_lightning_precisions():
    assert compute_dtype("bf16-mixed") == torch.bfloat16
    assert compute_dtype("16-mixed") == torch.float16
    assert compute_dtype("32-true") == torch.float32


def test_training_flops_count_backward_and_leave_the_run_untouched():
    module = CPCModule(encoder=ResNetEncoder(width=8))
    images = torch.rand(4, 1, 28, 28)
    with FlopCounterMode(display=False) as forward:
        module.shared_step(images, "train")
    torch.manual_seed(0)
    flops = module.training_flops(images)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # the random stream is where it was
    assert flops >= 2 * forward.get_total_flops() > 0  # backward is about twice the forward
    assert all(p.grad is None for p in module.parameters())


def test_window_below_two_is_a_clear_error():
    with pytest.raises(ValueError, match="window_size must be >= 2"):
        ThroughputMonitor(window_size=1)


@pytest.mark.slow
def test_fit_logs_rate_and_mfu_and_compiles_each_task(tiny_folder, tmp_path, monkeypatch):
    """``train/images_per_sec`` and ``train/mfu`` reach metrics.csv, in every row as the
    timing-free identity mfu = steps/s * FLOPs per step / peak (batches of 8 images, the peak
    given); ``--model.compile true`` compiles every task once (compilation itself mocked:
    inductor takes minutes on this CPU)."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    cli = cli_main(
        fit_args(
            tiny_folder,
            tmp_path,
            "--throughput.window_size=2",
            f"--throughput.peak_flops={PEAK}",
            "--trainer.log_every_n_steps=1",
            "--model.compile=true",
            "--online_knn.every_n_epochs=0",
        )
    )
    assert compiled == list(cli.model.tasks.values())
    with open(f"{cli.trainer.logger.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("train/images_per_sec")]
    assert logged and all(r.get("train/mfu") for r in logged)  # both, in the same rows
    flops = cli.model.flops_per_batch
    assert flops > 0
    for row in logged:
        steps_per_sec = float(row["train/images_per_sec"]) / 8  # data.batch_size, drop_last
        assert float(row["train/mfu"]) == pytest.approx(steps_per_sec * flops / PEAK, rel=1e-5)
