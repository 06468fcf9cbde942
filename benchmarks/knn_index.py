"""Exact against approximate (IVF) kNN search: seconds and recall@k, as the kNN runs them.

    python benchmarks/knn_index.py                          # 500k bank, 10k queries, D = 256
    python benchmarks/knn_index.py --bank 1000000 --dims 64 512 --memmap

Generated features of the given sizes: unit vectors around 100 random centres in a 32-dim
subspace plus noise (neighbours mean something, as in learned features), standardised and
normalised as the report does. For each dim, times :func:`cpc.eval.index.build_index` plus
:func:`cpc.eval.index.search_index` with an exact ``IndexFlatIP`` and with the IVF index the kNN
uses above ``knn_exact_max``, and prints recall@k of the IVF against exact search as a markdown
table. ``--memmap`` keeps the bank in a memory-mapped temporary file (as ``--report.memmap``).
"""

from __future__ import annotations

import argparse
import time

import faiss
import torch

from cpc.eval.index import build_index, search_index
from cpc.eval.knn import cosine_transform
from cpc.eval.storage import FeatureRows


def features(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``(n, dim)`` clustered features, generated in chunks."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(100, 32, generator=g)
    basis = torch.randn(32, dim, generator=g)
    chunks = []
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        z = centres[torch.randint(100, (m,), generator=g)] + torch.randn(m, 32, generator=g)
        chunks.append(z @ basis + 2 * torch.randn(m, dim, generator=g))
    return torch.cat(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[256])
    parser.add_argument("--bank", type=int, default=500_000, help="memory bank rows")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--memmap", action="store_true", help="bank in a memory-mapped file")
    args = parser.parse_args()

    print(
        f"{args.bank} bank x {args.queries} queries, k={args.k}, faiss {faiss.__version__}, ",
        end="",
    )
    print(f"{faiss.omp_get_max_threads()} threads, {faiss.get_num_gpus()} GPUs")
    print("| dim | exact s | IVF s | IVF nlist / nprobe | recall@k |")
    print("|---|---|---|---|---|")
    for dim in args.dims:
        bank, queries = features(args.bank, dim), features(args.queries, dim, seed=1)
        if args.memmap:
            rows = FeatureRows(memmap=True)
            for chunk in bank.split(65_536):
                rows.append(chunk)
            bank = rows.tensor()
        cosine = cosine_transform(bank, standardize=True)
        results = {}
        for name, exact_max in (("exact", args.bank), ("ivf", args.bank - 1)):
            start = time.perf_counter()
            index = build_index(bank, cosine, exact_max=exact_max)
            found = search_index(index, queries, args.k, cosine)[1]
            results[name] = (time.perf_counter() - start, found, index)
        truth, found = results["exact"][1], results["ivf"][1]
        hits = sum(
            len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)
        )
        ivf = faiss.extract_index_ivf(results["ivf"][2])
        print(
            f"| {dim} | {results['exact'][0]:.1f} | {results['ivf'][0]:.1f} | "
            f"{ivf.nlist} / {ivf.nprobe} | {hits / truth.numel():.4f} |"
        )


if __name__ == "__main__":
    main()
