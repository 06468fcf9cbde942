"""benchmarks/label_efficiency.py: each trained row keeps the setting chosen on draw 0's
validation accuracy (never test), and the table says mean ± std over draws."""

import json

from helpers import load_benchmark

bench = load_benchmark("label_efficiency")


def run(seed: int, setting: list[str], val: float, test: float) -> dict:
    return {"labels": {"seed": seed}, "setting": setting, "val_top1": val, "test": {"top1": test}}


def test_the_setting_is_chosen_on_validation_of_draw_zero(tmp_path):
    a, b = ["--model.lr=2e-3"], ["--model.lr=5e-3"]
    runs = [run(0, a, 0.70, 0.90), run(0, b, 0.80, 0.60), run(1, b, 0.78, 0.62), run(1, a, 0, 1)]
    assert bench.chosen_runs(runs) == [runs[1], runs[2]]  # b: best val, whatever test says

    folder = tmp_path / "scratch" / "10"
    folder.mkdir(parents=True)
    for i, r in enumerate(runs):
        (folder / f"{i}.json").write_text(json.dumps(r))
    table = bench.table(tmp_path, ["10"])
    assert "| 10 | – | – | – | 61.00 ± 1.41 (n=2) |" in table
