"""The faiss index behind the kNN search: exact for ordinary banks, approximate for large ones.

:func:`build_index` picks the index by the memory bank's size ``N`` (Johnson et al., 2019,
"Billion-scale similarity search with GPUs"; the faiss wiki's "Guidelines to choose an index"):

- ``N <= exact_max`` (default 200k: every built-in dataset's bank): ``IndexFlatIP``, exact
  inner products, so reported accuracies do not depend on an approximation.
- ``N > exact_max``: ``IndexIVFFlat`` (Jégou et al., 2011, inverted file): the bank is split
  into ``nlist = 4 * sqrt(N)`` cells by spherical k-means on a seeded sample of the bank, and a
  query scans only the ``nprobe = ceil(nlist / 8)`` cells nearest to it, about 1/8 of the bank.
  ``tests/eval/test_index.py`` asserts recall@20 >= 0.95 against exact search on generated
  clustered data (figures: ``docs/results.md#evaluation-cost``). IVF rather than HNSW because
  it runs on CPU and GPU alike (faiss has no GPU HNSW), adds the bank in chunks with no memory
  beyond the vectors, and trades speed for recall with one knob (``nprobe``).

On the GPU when faiss has GPU support and sees a GPU (``faiss.get_num_gpus() > 0``, i.e.
``faiss-gpu`` is installed in place of ``faiss-cpu``): the index is copied there with
``faiss.index_cpu_to_gpu`` (an IVF index after its k-means, which runs on the CPU), on the
current torch CUDA device. With ``faiss-cpu`` the index stays on the CPU, wherever the features
are.

The bank and the queries go through faiss in chunks of ``chunk_size`` rows, each passed through
``transform`` first (the kNN's standardisation and L2 normalisation), so a bank kept in a
memory-mapped file (:func:`cpc.eval.features.extract_feature_sets` with ``memmap=True``) is never
copied whole into RAM apart from faiss's own copy of the vectors.

Example:
    >>> index = build_index(bank, transform=lambda x: F.normalize(x, dim=1))  # bank (N, D)
    >>> sims, indices = search_index(index, queries, k=20, transform=...)  # (Q, 20) each
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import faiss
import numpy as np
import torch

#: largest bank searched exactly; above it an IVF index (every built-in dataset stays exact)
EXACT_MAX = 200_000
#: the IVF index scans 1/PROBE_FRACTION of its cells per query
PROBE_FRACTION = 8
#: rows per chunk handed to faiss (64k rows of 2048 floats: 512 MiB)
CHUNK = 65_536
#: largest nprobe (and k) faiss's GPU indexes accept
GPU_MAX_PROBE = 2048

Transform = Callable[[torch.Tensor], torch.Tensor]


def use_gpu() -> bool:
    """Whether faiss can put indexes on a GPU: ``faiss-gpu`` installed and a GPU visible."""
    return faiss.get_num_gpus() > 0


def ivf_lists(size: int) -> int:
    """IVF cells for a bank of ``size`` rows: ``4 * sqrt(N)`` (the faiss guideline is 4 to 16
    times sqrt(N)), at most ``N // 39`` so k-means has the 39 points per centroid it asks for."""
    return max(1, min(round(4 * math.sqrt(size)), size // 39))


def build_index(
    bank: torch.Tensor,
    transform: Transform | None = None,
    *,
    exact_max: int = EXACT_MAX,
    gpu: bool | None = None,
    chunk_size: int = CHUNK,
    seed: int = 0,
) -> faiss.Index:
    """An inner-product index holding ``transform(bank)``: exact up to ``exact_max`` rows, IVF
    above (see the module docstring).

    Args:
        bank: the memory bank, any float dtype, on any device or in a memory-mapped file.
        transform: applied to each chunk of rows before it is added (identity if None).
        exact_max: largest bank searched exactly.
        gpu: put the index on the GPU; default :func:`use_gpu`.
        chunk_size: rows transformed and added at a time.
        seed: seeds the sample the IVF k-means trains on (and faiss's k-means).

    Shape:
        - bank: ``(N, D)``
    """
    if bank.ndim != 2 or len(bank) == 0:
        raise ValueError(f"the bank must be a non-empty (N, D) matrix, got {tuple(bank.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    transform = transform or _identity
    size, dim = bank.shape
    if size <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        index = _trained_ivf(bank, transform, dim, seed)
    if use_gpu() if gpu is None else gpu:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), _gpu_device(), index)
    for start in range(0, size, chunk_size):
        index.add(_as_numpy(transform(bank[start : start + chunk_size])))
    return index


def search_index(
    index: faiss.Index,
    queries: torch.Tensor,
    k: int,
    transform: Transform | None = None,
    chunk_size: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest inner products of each ``transform(query)`` in ``index``, largest first:
    ``(similarities float32, indices int64)``, each ``(Q, k)``, on the CPU.

    Raises:
        ValueError: if an IVF index's probed cells held fewer than ``k`` vectors for a query
            (faiss pads with index -1, which would silently pick the bank's last row).
    """
    transform = transform or _identity
    sims, indices = [], []
    for start in range(0, len(queries), chunk_size):
        s, i = index.search(_as_numpy(transform(queries[start : start + chunk_size])), k)
        if (i < 0).any():
            raise ValueError(
                f"the approximate index found fewer than k={k} neighbours for some queries: "
                "lower k or raise knn_exact_max above the bank size (exact search)"
            )
        sims.append(torch.from_numpy(s))
        indices.append(torch.from_numpy(i))
    if not sims:  # no queries
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(sims), torch.cat(indices)


def _trained_ivf(bank: torch.Tensor, transform: Transform, dim: int, seed: int) -> faiss.Index:
    """An ``IndexIVFFlat`` (inner product) trained by 10 iterations of spherical k-means on a
    seeded sample of ``40 * nlist`` rows of the bank: the cells only route the search, so a
    rough clustering serves, and it costs about as much as 6k exact queries."""
    size = len(bank)
    nlist = ivf_lists(size)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True  # unit centroids: cells by cosine, as the queries are compared
    index.cp.seed = seed
    index.cp.niter = 10
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(size, generator=generator)[: 40 * nlist].sort().values  # sorted: reads
    index.train(_as_numpy(transform(bank[rows.to(bank.device)])))  # in file order from a memmap
    index.nprobe = min(math.ceil(nlist / PROBE_FRACTION), GPU_MAX_PROBE)
    return index


@functools.cache
def _gpu_resources() -> faiss.StandardGpuResources:
    """One set of GPU resources (scratch memory, streams) for the process: costly to create."""
    return faiss.StandardGpuResources()


def _gpu_device() -> int:
    """The current torch CUDA device (each DDP rank's own), 0 if torch sees no CUDA."""
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _as_numpy(features: torch.Tensor) -> np.ndarray:
    """C-contiguous float32 array, as faiss requires."""
    return np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
