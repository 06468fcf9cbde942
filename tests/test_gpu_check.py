"""benchmarks/gpu_check.py's table, built on the CPU with 2 steps (the GPU run is the lead's)."""

import subprocess

from helpers import ROOT, data_args, load_benchmark


def test_gpu_check_prints_one_row_per_fit(tiny_folder, tmp_path, capsys):
    gpu_check = load_benchmark("gpu_check")
    extra = [*data_args(tiny_folder), "--model.encoder.width=8"]
    rows = gpu_check.main(
        ["--device=cpu", "--steps=3", "--window=2", "--precision", "32", "--compile", "false"]
        + ["--report-precisions", "--out", str(tmp_path), "--", *extra]
    )
    assert len(rows) == 1 and rows[0]["precision"] == "32-true" and rows[0]["compile"] is False
    assert rows[0]["images/s"] > 0 and 0 < rows[0]["MFU %"] <= 100
    assert rows[0]["report s"] is None  # not asked for this precision
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[2] == "| " + " | ".join(gpu_check.COLUMNS) + " |"
    assert table[4].startswith("| 32-true | False | ") and "matmul rate" in table[-1]
    assert capsys.readouterr().out.count("| 32-true | False |") == 1


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks/gpu_check.sh")]).returncode == 0
