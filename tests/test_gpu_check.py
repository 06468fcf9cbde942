"""benchmarks/gpu_check.py's table, built on the CPU with 2 steps (the GPU run is the lead's)."""

import subprocess

import pytest
from helpers import ROOT, data_args, load_benchmark

from cpc.module import CPCModule


@pytest.mark.slow
def test_gpu_check_prints_one_row_per_fit(tiny_folder, tmp_path, capsys, monkeypatch):
    """One row per fit; its MFU is the timing-free identity steps/s * FLOPs per step / peak
    (batches of 8 images, the peak given, the FLOPs those the fit counted)."""
    gpu_check = load_benchmark("gpu_check")
    counted, count = [], CPCModule.training_flops

    def counting(self, images):
        counted.append(count(self, images))
        return counted[-1]

    monkeypatch.setattr(CPCModule, "training_flops", counting)
    peak = 1e9
    extra = [*data_args(tiny_folder), "--model.encoder.width=8", f"--throughput.peak_flops={peak}"]
    rows = gpu_check.main(
        ["--device=cpu", "--steps=3", "--window=2", "--precision", "32", "--compile", "false"]
        + ["--report-precisions", "--out", str(tmp_path), "--", *extra]
    )
    assert len(rows) == 1 and rows[0]["precision"] == "32-true" and rows[0]["compile"] is False
    (flops,) = counted  # once, on the first batch
    steps_per_sec = rows[0]["images/s"] / 8  # data.batch_size, drop_last
    assert rows[0]["MFU %"] == pytest.approx(100 * steps_per_sec * flops / peak, rel=1e-5)
    assert rows[0]["report s"] is None  # not asked for this precision
    assert rows[0]["estimated step GB"] > 0  # the step-memory estimate, next to the measured peak
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[2] == "| " + " | ".join(gpu_check.COLUMNS) + " |"
    assert table[4].startswith("| 32-true | False | ") and "matmul rate" in table[-1]
    assert capsys.readouterr().out.count("| 32-true | False |") == 1


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks/gpu_check.sh")]).returncode == 0
