"""The kNN's faiss index: exact up to a size, IVF above it with measured recall, GPU when faiss
has one (faiss's GPU detection mocked: no GPU is needed)."""

import math

import faiss
import pytest
import torch
import torch.nn.functional as F

from cpc.eval import index as index_module
from cpc.eval.index import build_index, ivf_lists, search_index
from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol


def clustered(n: int, queries: int, dim: int = 32, clusters: int = 20, seed: int = 0):
    """Unit vectors around ``clusters`` random centres, queries from the same mixture; labels
    are the centres: ``(bank (n, dim), bank labels, queries (queries, dim), query labels)``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    labels = torch.randint(clusters, (n + queries,), generator=g)
    x = F.normalize(centres[labels] + 0.8 * torch.randn(n + queries, dim, generator=g), dim=1)
    return x[:n], labels[:n], x[n:], labels[n:]


def exact_top_k(bank: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    return (queries @ bank.T).topk(k, dim=1).indices  # (Q, N) -> (Q, k)


def recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Fraction of the true k nearest neighbours found, over all queries: recall@k."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.numel()


def test_up_to_the_threshold_the_index_is_exact():
    bank, _, queries, _ = clustered(500, 50)
    index = build_index(bank, exact_max=500, chunk_size=64)  # added in 8 chunks
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == 500
    sims, indices = search_index(index, queries, k=10, chunk_size=7)  # searched in 8 chunks
    torch.testing.assert_close(indices, exact_top_k(bank, queries, 10))
    torch.testing.assert_close(sims, (queries @ bank.T).topk(10, dim=1).values)


def test_above_the_threshold_an_ivf_index_keeps_recall_at_20_above_95_percent():
    bank, _, queries, _ = clustered(20_000, 500)
    index = build_index(bank, exact_max=10_000)
    nlist = ivf_lists(20_000)
    assert isinstance(index, faiss.IndexIVFFlat) and index.ntotal == 20_000
    assert (index.nlist, index.nprobe) == (nlist, math.ceil(nlist / 8)) == (512, 64)
    _, found = search_index(index, queries, k=20)
    measured = recall(found, exact_top_k(bank, queries, 20))
    assert measured >= 0.95, f"recall@20 = {measured:.4f}"
    assert index.nprobe <= index.nlist / 8  # and it did not get there by scanning everything
    index.nprobe = 4  # too few cells: the test can tell
    assert recall(search_index(index, queries, k=20)[1], exact_top_k(bank, queries, 20)) < 0.9


def test_ivf_is_seeded():
    bank, _, queries, _ = clustered(2_000, 20)
    a = search_index(build_index(bank, exact_max=100), queries, k=5)
    b = search_index(build_index(bank, exact_max=100), queries, k=5)
    torch.testing.assert_close(a, b)


def test_knn_accuracy_through_the_ivf_index_matches_exact_search():
    bank, bank_y, queries, query_y = clustered(20_000, 500)
    approx = KNN(EvalProtocol(knn_exact_max=10_000)).fit(bank, bank_y, 20)
    exact = KNN(backend="torch").fit(bank, bank_y, 20)
    approx, exact = approx.accuracy(queries, query_y), exact.accuracy(queries, query_y)
    assert abs(approx["top1"] - exact["top1"]) <= 0.01


def test_ivf_lists_follow_the_sqrt_rule_and_leave_k_means_39_points_per_cell():
    assert ivf_lists(1_000_000) == 4000
    assert ivf_lists(20_000) == 20_000 // 39  # 4 * sqrt = 566 would starve k-means
    assert ivf_lists(10) == 1


class FakeGpuResources:
    made = 0

    def __init__(self) -> None:
        FakeGpuResources.made += 1


@pytest.fixture
def fake_gpu(monkeypatch):
    """faiss reports one GPU; ``index_cpu_to_gpu`` records its call and returns the CPU index."""
    calls = []

    def index_cpu_to_gpu(resources, device, index):
        calls.append((resources, device, type(index)))
        return index

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", FakeGpuResources, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", index_cpu_to_gpu, raising=False)
    index_module._gpu_resources.cache_clear()
    FakeGpuResources.made = 0
    yield calls
    index_module._gpu_resources.cache_clear()


def test_the_index_moves_to_the_gpu_when_faiss_has_one(fake_gpu):
    bank, _, queries, _ = clustered(300, 20)
    flat = build_index(bank, exact_max=1_000)
    ivf = build_index(bank, exact_max=100)
    assert [(type(r), d, t) for r, d, t in fake_gpu] == [
        (FakeGpuResources, 0, faiss.IndexFlatIP),
        (FakeGpuResources, 0, faiss.IndexIVFFlat),  # trained on the CPU, then moved
    ]
    assert FakeGpuResources.made == 1  # one set of resources for the process
    assert flat.ntotal == ivf.ntotal == 300  # vectors added after the move, to the GPU index
    plain = EvalProtocol(knn_standardize=False)
    sims, indices = KNN(plain).fit(bank).neighbours(queries, 5)  # the kNN goes through it too
    assert len(fake_gpu) == 3
    torch.testing.assert_close(indices, exact_top_k(bank, queries, 5))


def test_without_gpu_support_the_index_stays_on_the_cpu(monkeypatch):
    def refuse(*args):
        raise AssertionError("index_cpu_to_gpu called without a GPU")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", refuse, raising=False)
    assert faiss.get_num_gpus() == 0  # faiss-cpu
    bank, _, queries, _ = clustered(100, 5)
    for index in (build_index(bank), build_index(bank, gpu=False)):
        assert type(index) is faiss.IndexFlatIP and index.ntotal == 100  # exact, on the CPU


@pytest.mark.parametrize(
    ("bank", "chunk_size", "message"),
    [
        (torch.zeros(0, 4), 10, "non-empty"),
        (torch.zeros(4), 10, "non-empty"),
        (torch.zeros(4, 4), 0, "chunk_size must be >= 1"),
    ],
)
def test_bad_input_is_one_clear_error(bank, chunk_size, message):
    with pytest.raises(ValueError, match=message):
        build_index(bank, chunk_size=chunk_size)


def test_too_few_vectors_in_the_probed_cells_is_an_error_not_a_padded_result():
    bank, _, queries, _ = clustered(100, 5)
    index = build_index(bank, exact_max=10)  # 2 cells, 1 probed: about 50 vectors seen
    assert (index.nlist, index.nprobe) == (2, 1)
    with pytest.raises(ValueError, match="fewer than k=90 neighbours"):
        search_index(index, queries, k=90)
