import math

import numpy as np
import pytest
import torch

from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol

BACKENDS = ["faiss", "torch"]


def knn(backend="faiss", batch_size=4096, standardize=False, pca=0, **protocol) -> KNN:
    """A KNN of a protocol with ``protocol``'s fields (plain cosine unless ``standardize``)."""
    fields = EvalProtocol(knn_standardize=standardize, knn_pca=pca, **protocol)
    return KNN(fields, backend=backend, batch_size=batch_size)


def predict(train, labels, query, num_classes, backend="faiss", batch_size=4096, **protocol):
    return knn(backend, batch_size, **protocol).fit(train, labels, num_classes).predict(query)


def accuracy(train, labels, query, query_labels, num_classes, backend="faiss", **protocol):
    return knn(backend, **protocol).fit(train, labels, num_classes).accuracy(query, query_labels)


def neighbours(bank, query, k, backend="faiss", **protocol):
    return knn(backend, **protocol).fit(bank).neighbours(query, k)


def unit(*degrees: float) -> torch.Tensor:
    """Unit vectors in the plane at the given angles, (len(degrees), 2)."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def dino_votes(train, labels, query, num_classes, k, temperature):
    """Slow reference: per query, sort all cosine similarities and add exp(s / T) per label."""
    train = torch.nn.functional.normalize(train.double(), dim=1)
    query = torch.nn.functional.normalize(query.double(), dim=1)
    votes = torch.zeros(len(query), num_classes, dtype=torch.float64)
    for q, vector in enumerate(query):
        sims = [(float(vector @ t), int(y)) for t, y in zip(train, labels, strict=True)]
        for sim, label in sorted(sims, reverse=True)[:k]:
            votes[q, label] += math.exp(sim / temperature)
    return votes


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_neighbours_give_expected_predictions(backend):
    train = unit(0, 10, 90, 100, 180, 190) * torch.tensor([1.0, 2, 3, 4, 5, 6])[:, None]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    query = unit(5, 95, 185, 40, 130)
    scores = predict(train, labels, query, num_classes=3, k=2, backend=backend)
    assert scores.shape == (5, 3)
    # Each query's two nearest training points share a label (40 -> {10, 0}, 130 -> {100, 90}).
    assert scores.argmax(dim=1).tolist() == [0, 1, 2, 0, 1]
    # Only the labels of the 2 nearest neighbours get votes.
    assert (scores > 0).sum(dim=1).tolist() == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_are_dino_votes_up_to_a_per_query_factor(backend):
    torch.manual_seed(0)
    train, labels, query = torch.randn(40, 8), torch.randint(0, 4, (40,)), torch.randn(6, 8)
    scores = predict(train, labels, query, 4, k=7, temperature=0.5, backend=backend)
    votes = dino_votes(train, labels, query, 4, k=7, temperature=0.5)
    probabilities = scores.double() / scores.sum(dim=1, keepdim=True)
    torch.testing.assert_close(probabilities, votes / votes.sum(dim=1, keepdim=True))
    # The nearest neighbour has weight exactly 1, so every score lies in [0, k].
    assert scores.max() <= 7 and scores.max(dim=1).values.min() >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperature_weighting_beats_majority_vote(backend):
    # One very close neighbour of class 0 against two farther ones of class 1.
    train, labels, query = unit(0, 40, -40), torch.tensor([0, 1, 1]), unit(5)
    sharp = predict(train, labels, query, 2, k=3, temperature=0.07, backend=backend)
    flat = predict(train, labels, query, 2, k=3, temperature=100.0, backend=backend)
    assert sharp.argmax().item() == 0
    assert flat.argmax().item() == 1


def test_faiss_matches_torch_reference():
    torch.manual_seed(0)
    train, labels = torch.randn(3000, 64), torch.randint(0, 10, (3000,))
    query = torch.randn(500, 64)
    fast = predict(train, labels, query, 10, backend="faiss")
    slow = predict(train, labels, query, 10, backend="torch", batch_size=128)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast.argmax(dim=1), slow.argmax(dim=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_scale_invariant_and_k_clipped_to_train_size(backend):
    torch.manual_seed(0)
    train, labels, query = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0]), torch.randn(3, 4)
    clipped = predict(train, labels, query, 3, k=100, backend=backend)
    torch.testing.assert_close(clipped, predict(train, labels, query, 3, k=5, backend=backend))
    rescaled = predict(train * 7, labels, query * 0.1, 3, k=5, backend=backend)
    torch.testing.assert_close(clipped, rescaled)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accuracy(backend):
    train = unit(0, 90, 180, 270)
    labels = torch.tensor([0, 1, 2, 3])
    query, query_labels = unit(10, 80, 190, 200), torch.tensor([0, 1, 2, 3])  # last one wrong
    result = accuracy(train, labels, query, query_labels, 4, k=1, backend=backend)
    assert result["top1"] == pytest.approx(0.75)
    assert result["top5"] == 1.0  # top-min(5, C): with C <= 5 every label is in the top 5
    assert accuracy(train, labels, query, query_labels, 10, k=1, backend=backend)[
        "top5"
    ] == pytest.approx(0.75)  # 9 classes tie at 0 and fill the top 5 arbitrarily


BANK, BANK_LABELS, QUERIES = torch.randn(10, 4), torch.randint(0, 3, (10,)), torch.randn(2, 4)


@pytest.mark.parametrize(
    ("protocol", "backend", "batch_size", "message"),
    [
        ({"k": 0}, "faiss", 1, "k must be"),
        ({"temperature": 0.0}, "faiss", 1, "temperature"),
        ({}, "sklearn", 1, "sklearn"),
        ({}, "faiss", 0, "batch_size"),
    ],
)
def test_bad_settings_raise_value_error(protocol, backend, batch_size, message):
    with pytest.raises(ValueError, match=message):
        KNN(EvalProtocol(**protocol), backend=backend, batch_size=batch_size)


@pytest.mark.parametrize(
    ("bank", "labels", "message"),
    [
        (torch.randn(0, 4), torch.zeros(0, dtype=torch.long), "empty"),
        (torch.randn(10), BANK_LABELS, "2-D"),
        (BANK, torch.zeros(9, dtype=torch.long), "bank labels must have shape"),
        (BANK, torch.full((10,), 3), r"\[0, 3\)"),
        (BANK, torch.zeros(10), "integers"),
        (torch.full((10, 4), float("inf")), BANK_LABELS, "bank contain NaN or inf"),
    ],
)
def test_a_bad_bank_raises_value_error(bank, labels, message):
    with pytest.raises(ValueError, match=message):
        KNN().fit(bank, labels, num_classes=3)


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        (torch.randn(2, 5), "feature dims differ"),
        (torch.tensor([[0.0, float("nan"), 0, 0]] * 2), "queries contain NaN"),
        (torch.randn(2, 2, 2), "2-D"),
    ],
)
def test_bad_queries_raise_value_error(queries, message):
    with pytest.raises(ValueError, match=message):
        KNN().fit(BANK, BANK_LABELS, 3).predict(queries)


def test_bad_query_labels_and_missing_fit_or_labels_are_refused():
    fitted = KNN().fit(BANK, BANK_LABELS, 3)
    with pytest.raises(ValueError, match="query labels must have shape"):
        fitted.accuracy(QUERIES, torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="fit"):
        KNN().neighbours(QUERIES)
    with pytest.raises(RuntimeError, match="labels"):
        KNN().fit(BANK).predict(QUERIES)
    assert KNN().fit(BANK).neighbours(QUERIES, 3)[1].shape == (2, 3)  # no labels needed


def test_num_classes_defaults_to_the_largest_label_plus_one():
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 4, 4, 0, 1])
    assert KNN().fit(BANK, labels).predict(QUERIES).shape == (2, 5)
    assert KNN().fit(BANK, labels, num_classes=7).predict(QUERIES).shape == (2, 7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_standardize_uses_train_statistics_only(backend):
    torch.manual_seed(0)
    train, labels = torch.randn(200, 8) * 3 + 5, torch.randint(0, 4, (200,))
    query = torch.randn(30, 8)
    mean, std = train.mean(0), train.std(0)
    expected = predict((train - mean) / std, labels, (query - mean) / std, 4, backend=backend)
    scores = predict(train, labels, query, 4, backend=backend, standardize=True)
    torch.testing.assert_close(scores, expected)


def test_standardize_lets_every_dimension_count():
    # The label lives in dimension 0 (scale 1); dimension 1 is label-free noise of scale 100
    # that dominates the raw cosine. Standardised, both dimensions weigh alike.
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (1000,))
    features = torch.stack([labels * 2.0 - 1 + 0.1 * torch.randn(1000), 100 * torch.randn(1000)], 1)
    train, query = features[:800] + 10, features[800:] + 10  # an offset, as ReLU features have
    raw = accuracy(train, labels[:800], query, labels[800:], 2)
    standardized = accuracy(train, labels[:800], query, labels[800:], 2, standardize=True)
    assert raw["top1"] < 0.75
    assert standardized["top1"] > 0.95


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_neighbours_is_cosine_top_k(backend):
    rng = np.random.default_rng(0)
    bank, query = rng.normal(size=(30, 5)), rng.normal(size=(4, 5))
    sims, idx = neighbours(
        torch.from_numpy(bank), torch.from_numpy(query * 7), k=3, backend=backend
    )  # scale-invariant
    cos = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        bank / np.linalg.norm(bank, axis=1, keepdims=True)
    ).T
    np.testing.assert_array_equal(idx.numpy(), np.argsort(-cos, axis=1)[:, :3])
    np.testing.assert_allclose(sims.numpy(), -np.sort(-cos, axis=1)[:, :3], rtol=1e-5)
    with pytest.raises(ValueError, match=r"k must be in \[1, 30\]"):
        neighbours(torch.from_numpy(bank), torch.from_numpy(query), k=31)


def test_knn_neighbours_standardize_ranks_the_standardised_features():
    torch.manual_seed(0)
    bank, query = torch.randn(50, 6) * torch.tensor([100.0, 1, 1, 1, 1, 1]), torch.randn(5, 6)
    mean, std = bank.mean(0), bank.std(0)
    _, expected = neighbours((bank - mean) / std, (query - mean) / std, k=4)
    _, idx = neighbours(bank, query, k=4, standardize=True)
    assert torch.equal(idx, expected)
    _, raw = neighbours(bank, query, k=4)
    assert not torch.equal(raw, expected)  # the large first dimension dominates raw cosine


def test_pca_whitening_lets_a_weak_signal_count_against_correlated_noise():
    """10 noise sources, each copied into 10 dimensions, swamp a 1-d class signal in the cosine
    even after standardisation; whitening the top 11 principal components gives the signal the
    weight of one noise source, not of one in a hundred."""
    torch.manual_seed(0)
    n = 2000
    labels = torch.randint(2, (n,))
    signal = (2.0 * labels - 1)[:, None] + 0.3 * torch.randn(n, 1)  # (n, 1)
    noise = torch.randn(n, 10).repeat_interleave(10, dim=1) + 0.01 * torch.randn(n, 100)
    x = torch.cat([signal, noise], dim=1)  # (n, 101)
    train, query, y_train, y_query = x[:1500], x[1500:], labels[:1500], labels[1500:]
    plain = accuracy(train, y_train, query, y_query, 2, standardize=True)["top1"]
    whitened = accuracy(train, y_train, query, y_query, 2, standardize=True, pca=11)["top1"]
    assert plain < 0.8 and whitened > 0.98


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_fit_serves_several_query_sets_as_separate_fits_would(backend, monkeypatch):
    import cpc.eval.knn as knn_module

    generator = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(200, 12, generator=generator), torch.arange(200) % 3
    sets = {
        name: (torch.randn(n, 12, generator=generator), torch.arange(n) % 3)
        for name, n in (("test", 40), ("val", 30))
    }
    options = dict(k=5, backend=backend, standardize=True, pca=8)
    alone = {name: accuracy(bank, labels, *query, 3, **options) for name, query in sets.items()}
    original, banks = knn_module.cosine_transform, []

    def counting(bank, standardize):
        banks.append(len(bank))
        return original(bank, standardize)

    monkeypatch.setattr(knn_module, "cosine_transform", counting)
    fitted = knn(**options).fit(bank, labels, 3)
    assert {name: fitted.accuracy(*query) for name, query in sets.items()} == alone
    assert banks == [200]  # the bank is standardised (and indexed) once for both query sets


def test_the_protocol_fields_reach_the_vote():
    """k, temperature, knn_standardize and knn_pca of the protocol are the ones used."""
    torch.manual_seed(0)
    train, labels, query = torch.randn(60, 6) * 4 + 1, torch.randint(0, 3, (60,)), torch.randn(9, 6)
    mean, std = train.mean(0), train.std(0)
    plain = KNN(EvalProtocol(k=4, temperature=0.3, knn_standardize=False))
    expected = dino_votes((train - mean) / std, labels, (query - mean) / std, 3, 4, 0.3)
    scores = KNN(EvalProtocol(k=4, temperature=0.3)).fit(train, labels, 3).predict(query)
    torch.testing.assert_close(
        scores.double() / scores.sum(1, keepdim=True), expected / expected.sum(1, keepdim=True)
    )
    raw = plain.fit(train, labels, 3).predict(query).double()
    assert not torch.allclose(
        raw / raw.sum(1, keepdim=True), expected / expected.sum(1, keepdim=True)
    )
    _, found = KNN(EvalProtocol(knn_pca=2)).fit(train).neighbours(query, 5)
    _, full = KNN(EvalProtocol()).fit(train).neighbours(query, 5)
    assert not torch.equal(found, full)  # two principal components rank differently
