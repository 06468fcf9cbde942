"""How many training images the compact feature's PCA whitening needs (validation split only).

    python benchmarks/compact_fit.py runs/quality/fashion_mnist/seed0/**/last.ckpt

Extracts the checkpoint's whole latent grid for the 55k train and 5k val images once, fits the
whitening (``cpc.models.projection.WhitenedPCA``, 512 values) on seeded subsets of the train
images, and prints val kNN (k=20, T=0.07) and linear-probe top-1 for each subset size. The test
split is never loaded.
"""

from __future__ import annotations

import argparse

import torch

from cpc.checkpoint import load_encoder
from cpc.data import FashionMNISTDataModule
from cpc.eval.features import extract_features
from cpc.eval.knn import KNN
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalProtocol
from cpc.models.projection import WhitenedPCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 55000])
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()

    encoder = load_encoder(args.checkpoint)
    data = FashionMNISTDataModule(root="data", batch_size=512)
    train, train_y = extract_features(encoder, data.eval_dataloader("train"), "full")
    val, val_y = extract_features(encoder, data.eval_dataloader("val"), "full")
    print("| fit images | val kNN top-1 | val linear top-1 |\n|---|---|---|")
    for size in args.sizes:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:size]
        whiten = WhitenedPCA(args.dim).fit(train[keep])
        a, b = whiten(train), whiten(val)
        knn = KNN(EvalProtocol(knn_standardize=False)).fit(a, train_y, data.num_classes)
        knn = knn.accuracy(b, val_y)["top1"]
        probe = linear_probe(a, train_y, b, val_y, b, val_y, data.num_classes)
        print(f"| {min(size, len(train))} | {100 * knn:.2f} | {100 * probe['val_top1']:.2f} |")


if __name__ == "__main__":
    main()
