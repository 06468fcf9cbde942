import csv

import pytest
import torch
from helpers import fit_args
from torch.utils.flop_counter import FlopCounterMode

from cpc.cli import cli_main
from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.throughput import ThroughputMonitor, compute_dtype, matmul_flops


def test_matmul_probe_measures_a_positive_rate():
    assert 1e6 < matmul_flops("cpu", torch.float32, seconds=0.05) < 1e15


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


def test_fit_logs_rate_and_mfu_and_compiles_each_task(tiny_folder, tmp_path, monkeypatch):
    """``train/images_per_sec`` and ``train/mfu`` reach metrics.csv; ``--model.compile true``
    compiles every task once (compilation itself mocked: inductor takes minutes on this CPU)."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    cli = cli_main(
        fit_args(
            tiny_folder,
            tmp_path,
            "--throughput.window_size=2",
            "--trainer.log_every_n_steps=1",
            "--model.compile=true",
            "--online_knn.every_n_epochs=0",
        )
    )
    assert compiled == list(cli.model.tasks.values())
    with open(f"{cli.trainer.logger.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["train/images_per_sec"]) for r in rows if r.get("train/images_per_sec")]
    mfu = [float(r["train/mfu"]) for r in rows if r.get("train/mfu")]
    assert rates and all(rate > 0 for rate in rates)
    assert mfu and all(0 < value <= 1 for value in mfu)
    assert cli.model.flops_per_batch > 0
