"""Which compact feature (``encoder(images)``) serves few labels: PCA dims on validation only.

    python benchmarks/compact_budgets.py CKPT --dims 64 128 256 512 --budgets 10 100 1000

Extracts the checkpoint's whole latent grid of the 55k train and 5k val images once; for each
``compact_dim``, fits the whitening (:class:`cpc.models.projection.WhitenedPCA`) on the same
20k train images ``cpc fit`` fits it on, then prints val top-1 of the report's kNN and linear
probe at each label budget (mean over draws, :mod:`cpc.eval.label_efficiency`) and with all
labels. Raw pixels are scored the same way, as the bar each row must clear. The test split is
never loaded: this is where ``compact_dim`` is chosen.
"""

from __future__ import annotations

import argparse

import torch

from cpc.checkpoint import load_encoder
from cpc.data import FashionMNISTDataModule
from cpc.eval.features import COMPACT_FIT_IMAGES, extract_features, pixel_features
from cpc.eval.knn import KNN
from cpc.eval.label_efficiency import budget_rows
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalProtocol
from cpc.models.projection import WhitenedPCA


def scores(train, train_y, val, val_y, protocol: EvalProtocol, classes: int) -> list[str]:
    """Val top-1 (%) of kNN / linear at each budget, then with all labels."""
    features, labels = {"train": train, "val": val}, {"train": train_y, "val": val_y}
    rows = budget_rows(features, labels, protocol, classes, {}, test_split="val")
    cells = [
        f"{100 * r['knn']['val_top1']:.1f} / {100 * r['linear']['val_top1']:.1f}"
        for r in rows.values()
    ]
    knn = KNN(protocol).fit(train, train_y, classes).accuracy(val, val_y)["top1"]
    probe = linear_probe(train, train_y, val, val_y, val, val_y, classes)["val_top1"]
    return [*cells, f"{100 * knn:.1f} / {100 * probe:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()

    encoder = load_encoder(args.checkpoint)
    data = FashionMNISTDataModule(root="data", batch_size=512)
    train, train_y = extract_features(encoder, data.eval_dataloader("train"), "full")
    val, val_y = extract_features(encoder, data.eval_dataloader("val"), "full")
    budgets = tuple(args.budgets)
    print("| feature | " + " | ".join(f"{b}/class kNN / linear" for b in budgets) + " | all |")
    print("|---" * (len(budgets) + 2) + "|")
    # the compact feature is scored as the report scores it: standardised, no further PCA
    compact = EvalProtocol(label_budgets=budgets, label_draws=args.draws, knn_pca=0)
    fit = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[
        :COMPACT_FIT_IMAGES
    ]
    for dim in args.dims:
        whiten = WhitenedPCA(dim).fit(train[fit])
        cells = scores(whiten(train), train_y, whiten(val), val_y, compact, data.num_classes)
        print(f"| compact_dim {dim} | " + " | ".join(cells) + " |")
    grid = EvalProtocol(label_budgets=budgets, label_draws=args.draws, knn_pca=512)
    cells = scores(train, train_y, val, val_y, grid, data.num_classes)
    print("| whole grid (knn_pca 512) | " + " | ".join(cells) + " |")
    pixels = [pixel_features(data.eval_dataloader(s), progress=False) for s in ("train", "val")]
    cells = scores(*pixels[0], *pixels[1], grid, data.num_classes)
    print("| pixels (knn_pca 512) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
