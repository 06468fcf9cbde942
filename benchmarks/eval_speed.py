"""Speed of the evaluation: kNN (faiss vs the torch reference) and the linear probe.

    python benchmarks/eval_speed.py                  # Fashion-MNIST sizes: 55k bank, 10k queries
    python benchmarks/eval_speed.py --dims 64 2304 --bank 60000

Random features of the sizes the report uses (``mean`` pooling: 64 values, ``grid``: 256,
``full``: 2304 for the default encoder on 28x28 images), 10 classes. Times one call of
:class:`cpc.eval.knn.KNN` per backend (features standardised, as the report does) and of
:func:`cpc.eval.linear_probe.linear_probe` with its default sweep (3 weight decays x 10 epochs),
and prints a markdown table. Feature extraction is not included (see ``cpc eval``'s progress
bar: it depends on the encoder).
"""

from __future__ import annotations

import argparse
import time

import torch

from cpc.eval.knn import KNN
from cpc.eval.linear_probe import linear_probe


def knn_accuracy(backend, bank, bank_y, query, query_y) -> dict[str, float]:
    """The report's kNN (features standardised) of one backend."""
    return KNN(backend=backend).fit(bank, bank_y, 10).accuracy(query, query_y)


def seconds(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256, 2304])
    parser.add_argument("--bank", type=int, default=55000, help="training (memory bank) features")
    parser.add_argument("--queries", type=int, default=10000, help="test features")
    parser.add_argument("--val", type=int, default=5000, help="probe selection features")
    parser.add_argument("--no-probe", action="store_true", help="time kNN only")
    args = parser.parse_args()

    torch.manual_seed(0)
    print(f"{args.bank} bank x {args.queries} queries, {torch.get_num_threads()} threads")
    print("| dim | kNN faiss s | kNN torch s | linear probe s |")
    print("|---|---|---|---|")
    for dim in args.dims:
        bank, bank_y = torch.randn(args.bank, dim), torch.randint(0, 10, (args.bank,))
        query, query_y = torch.randn(args.queries, dim), torch.randint(0, 10, (args.queries,))
        val, val_y = torch.randn(args.val, dim), torch.randint(0, 10, (args.val,))
        knn = {
            backend: seconds(knn_accuracy, backend, bank, bank_y, query, query_y)
            for backend in ("faiss", "torch")
        }
        probe = "-"
        if not args.no_probe:
            split = (bank, bank_y, val, val_y, query, query_y, 10)
            probe = f"{seconds(linear_probe, *split):.1f}"
        print(f"| {dim} | {knn['faiss']:.1f} | {knn['torch']:.1f} | {probe} |")


if __name__ == "__main__":
    main()
