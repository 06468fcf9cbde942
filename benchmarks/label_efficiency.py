"""Label efficiency on Fashion-MNIST: accuracy against labels per class, CPC against scratch.

    python benchmarks/label_efficiency.py --ckpt PRETRAINED.ckpt --out runs/label_efficiency
    python benchmarks/label_efficiency.py --out runs/label_efficiency --table   # print only

Rows, for each budget (labels per class; ``all`` = every label of the 55k train split) and
each draw of the labelled subset (:func:`cpc.data.subset.class_balanced_subset`, seed = draw):

- **CPC kNN / CPC linear**: the frozen encoder's whole grid, scored by the report's label
  budgets (``cpc eval --label_budgets``); **pixels kNN / linear**: raw pixels, the same way;
- **CPC fine-tuned**: ``cpc finetune --ckpt_path PRETRAINED`` (full mode);
- **same encoder from scratch**: ``cpc finetune`` without ``--ckpt_path``: same architecture,
  head, batch, schedule and augmentation;
- **small CNN from scratch**: :class:`cpc.models.SmallCNN`, same recipe.

Every trained row picks its learning rate (:data:`GRID`) on the validation split with draw 0,
then trains the other draws with it (``--grid-from 100``: the setting chosen at 100 labels per
class, for budgets too costly to sweep); each run's epoch is its best ``val/acc`` checkpoint, and
its test split is scored once, by that checkpoint. "Best CPC" is the CPC row with the best
mean validation accuracy at that budget. Every run writes ``<out>/<row>/<budget>/...json``
and is skipped when that file exists, so the benchmark resumes and can be split over processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cpc.data import FashionMNISTDataModule
from cpc.eval.protocol import EvalProtocol
from cpc.eval.report import evaluate
from cpc.finetune.cli import finetune_main

CONFIG = "configs/fashion_mnist_finetune.yaml"
#: steps of training per budget: enough to converge on each (few labels train fast)
STEPS = {"10": 400, "50": 600, "100": 800, "1000": 1500, "all": 2500}
#: learning-rate settings each trained row chooses from on validation
SCALED, FULL = "--model.encoder_lr_scale=0.1", "--model.encoder_lr_scale=1.0"
GRID = {
    "finetuned": [["--model.lr=2e-3", SCALED], ["--model.lr=2e-3", FULL]],
    "scratch": [["--model.lr=2e-3", FULL], ["--model.lr=5e-3", FULL]],
    "small_cnn": [["--model.lr=2e-3", FULL], ["--model.lr=5e-3", FULL]],
}
ROWS = {
    "knn": "CPC kNN (frozen)",
    "linear": "CPC linear (frozen)",
    "finetuned": "CPC fine-tuned",
    "scratch": "same encoder from scratch",
    "small_cnn": "small CNN from scratch",
    "pixels_knn": "pixels kNN",
    "pixels_linear": "pixels linear",
}
CPC_ROWS = ("knn", "linear", "finetuned")


def train_args(row: str, budget: str, draw: int, setting: list[str], ckpt: str, out: Path):
    """``cpc finetune`` arguments of one trained run."""
    args = [f"--config={CONFIG}", f"--trainer.max_steps={STEPS[budget]}", *setting]
    args += [f"--trainer.default_root_dir={out}", f"--seed_everything={draw}"]
    args += [f"--data.label_seed={draw}", "--trainer.enable_progress_bar=false"]
    if budget != "all":
        args.append(f"--data.labels_per_class={budget}")
    if row == "finetuned":
        args.append(f"--ckpt_path={ckpt}")
    if row == "small_cnn":
        args.append("--model.encoder=cpc.models.SmallCNN")
    return args


def trained(row: str, budget: str, draw: int, setting: int, ckpt: str, out: Path) -> dict:
    """The report of one fine-tune/scratch run, trained unless ``<out>/...json`` exists."""
    path = out / row / budget / f"draw{draw}_setting{setting}.json"
    if not path.exists():
        folder = path.with_suffix("")
        cli = finetune_main(train_args(row, budget, draw, GRID[row][setting], ckpt, folder))
        report = json.loads(
            (Path(cli.trainer.checkpoint_callback.dirpath) / "report.json").read_text()
        )
        path.write_text(json.dumps({**report, "setting": GRID[row][setting]}))
    return json.loads(path.read_text())


def trained_row(
    row: str, budget: str, draws: list[int], ckpt: str, out: Path, grid_from: str | None = None
) -> list[dict]:
    """The draws of a trained row, with the setting chosen on draw 0's validation accuracy (at
    this budget, or at budget ``grid_from``: larger budgets cost too much to sweep)."""
    if grid_from is not None:
        chosen = chosen_runs(
            [json.loads(p.read_text()) for p in (out / row / grid_from).glob("*.json")]
        )
        best = GRID[row].index(chosen[0]["setting"])
        return [trained(row, budget, d, best, ckpt, out) for d in draws]
    first = [trained(row, budget, draws[0], s, ckpt, out) for s in range(len(GRID[row]))]
    best = max(range(len(first)), key=lambda s: first[s]["val_top1"])
    return [first[best]] + [trained(row, budget, d, best, ckpt, out) for d in draws[1:]]


def frozen_rows(budgets: list[str], draws: int, ckpt: str, out: Path) -> dict:
    """kNN and linear rows of the frozen encoder and of pixels (the report's label budgets)."""
    path = out / "frozen.json"
    if not path.exists():
        from cpc.checkpoint import load_encoder

        numeric = tuple(int(b) for b in budgets if b != "all")
        protocol = EvalProtocol(
            pooling="full", knn_pca=512, label_budgets=numeric, label_draws=draws
        )
        report = evaluate(load_encoder(ckpt), FashionMNISTDataModule(), protocol, cache=False)
        path.write_text(json.dumps(report, default=str))
    return json.loads(path.read_text())


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(out: Path, budgets: list[str]) -> str:
    """Test top-1 (mean ± std over draws) per row and budget, and each row's val top-1."""
    cells = collect(out, budgets)
    return format_table(cells, budgets)


def collect(out: Path, budgets: list[str]) -> dict[str, dict[str, tuple[float, float, float, int]]]:
    """``{row: {budget: (test mean, test std, val mean, draws)}}`` of what has run."""
    frozen = json.loads((out / "frozen.json").read_text()) if (out / "frozen.json").exists() else {}
    cells: dict[str, dict[str, tuple[float, float, float, int]]] = {row: {} for row in ROWS}
    for budget in budgets:
        for row in ROWS:
            model, method = (
                ("pixels", row.split("_")[1]) if row.startswith("pixels") else ("encoder", row)
            )
            if method in ("knn", "linear") and frozen:
                if budget == "all":
                    scores = frozen[model][method]
                    cells[row][budget] = (
                        scores["top1"],
                        0.0,
                        scores.get("val_top1", float("nan")),
                        1,
                    )
                elif budget in frozen[model].get("budgets", {}):
                    s = frozen[model]["budgets"][budget][method]
                    cells[row][budget] = (s["top1"], s["top1_std"], s["val_top1"], len(s["draws"]))
            elif (out / row / budget).is_dir():
                runs = [
                    json.loads(p.read_text()) for p in sorted((out / row / budget).glob("*.json"))
                ]
                chosen = chosen_runs(runs)
                if chosen:
                    mean, std = summary([r["test"]["top1"] for r in chosen])
                    val = statistics.fmean(r["val_top1"] for r in chosen)
                    cells[row][budget] = (mean, std, val, len(chosen))
    return cells


def format_table(cells: dict, budgets: list[str]) -> str:
    lines = ["| labels per class | " + " | ".join(ROWS[r] for r in ROWS) + " | best CPC (on val) |"]
    lines.append("|---" * (len(ROWS) + 2) + "|")
    for budget in budgets:
        row_cells = []
        for row in ROWS:
            c = cells[row].get(budget)
            row_cells.append(
                "–" if c is None else f"{100 * c[0]:.2f} ± {100 * c[1]:.2f} (n={c[3]})"
            )
        cpc = {r: cells[r][budget] for r in CPC_ROWS if budget in cells[r]}
        best = max(cpc, key=lambda r: cpc[r][2]) if cpc else None
        best_cell = "–" if best is None else f"{100 * cpc[best][0]:.2f} ({ROWS[best]})"
        lines.append(f"| {budget} | " + " | ".join(row_cells) + f" | {best_cell} |")
    lines.append("")
    lines.append("Validation top-1 (the 5k images every choice was made on):")
    for row in ROWS:
        vals = [f"{b}: {100 * cells[row][b][2]:.2f}" for b in budgets if b in cells[row]]
        lines.append(f"- {ROWS[row]}: " + ", ".join(vals))
    return "\n".join(lines)


def chosen_runs(runs: list[dict]) -> list[dict]:
    """The runs of the setting chosen on draw 0's validation accuracy."""
    first = [r for r in runs if r["labels"]["seed"] == 0]
    if not first:
        return []
    best = max(first, key=lambda r: r["val_top1"])["setting"]
    return [r for r in runs if r["setting"] == best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="last.ckpt of a cpc fit run of configs/fashion_mnist.yaml")
    parser.add_argument("--budgets", nargs="+", default=["10", "100", "1000", "all"])
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--rows", nargs="+", default=["frozen", "finetuned", "scratch", "small_cnn"]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/label_efficiency"))
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument("--plot", type=Path, help="also save the curve (PNG) here")
    parser.add_argument("--grid-from", help="use the setting each row chose at this budget")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for budget in args.budgets:
            for row in args.rows:
                if row == "frozen":
                    frozen_rows(args.budgets, len(args.draws), args.ckpt, args.out)
                else:
                    (args.out / row / budget).mkdir(parents=True, exist_ok=True)
                    trained_row(row, budget, args.draws, args.ckpt, args.out, args.grid_from)
    print(table(args.out, args.budgets))
    if args.plot:
        plot(collect(args.out, args.budgets), args.plot)


def plot(cells: dict, path: Path) -> None:
    """The curve of every row; ``all`` is drawn at 5500 labels per class (55k / 10)."""
    from cpc.viz.labels import label_efficiency_figure

    def per_class(budget: str) -> int:
        return 5500 if budget == "all" else int(budget)

    curves = {
        ROWS[row]: {per_class(b): c[:2] for b, c in by_budget.items()}
        for row, by_budget in cells.items()
        if by_budget
    }
    label_efficiency_figure(curves, title="Fashion-MNIST test top-1", save=path)


if __name__ == "__main__":
    main()
