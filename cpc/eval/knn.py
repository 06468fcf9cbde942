"""Weighted k-nearest-neighbour classifier on frozen features (the DINO protocol).

Wu et al. (2018), "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
as used by DINO (Caron et al., 2021, ``eval_knn.py``): features are L2-normalised, each query
takes its ``k`` most cosine-similar training features, and neighbour ``i`` votes for its label
with weight ``exp(s_i / T)``. The class with the largest summed vote wins.

Optionally (``standardize=True``, what the evaluation report uses) each feature is first
standardised with the training set's mean and std, as the linear probe's inputs are. Cosine
similarity of raw features is dominated by the few dimensions of largest magnitude; after
standardisation every dimension counts alike (its effect on Fashion-MNIST:
``docs/results.md#ablations-what-each-choice-buys``).

Two backends share one signature and give the same scores (ties aside): ``"faiss"``
(:func:`cpc.eval.index.build_index`: an exact ``IndexFlatIP`` for banks up to ``exact_max`` rows,
an IVF index of recall@20 >= 0.95 above; on the GPU when faiss has GPU support) and ``"torch"``,
a chunked brute-force matmul that serves as the reference. The faiss backend standardises,
normalises and indexes the bank in chunks, so a bank in a memory-mapped file
(:func:`cpc.eval.features.extract_feature_sets` with ``memmap=True``) is not copied whole.

Shape letters: ``N`` training features, ``Q`` queries, ``D`` feature dim, ``C`` classes,
``k`` neighbours.

:func:`knn_neighbours` is the search alone (the neighbours' indices and similarities), which
:func:`knn_predict` turns into votes.

Example:
    >>> scores = knn_predict(train_f, train_y, test_f, num_classes=10)  # (Q, C)
    >>> knn_accuracy(train_f, train_y, test_f, test_y, num_classes=10)
    {'top1': 0.87, 'top5': 0.99}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from cpc.eval.features import standardization
from cpc.eval.index import CHUNK, Transform, build_index, search_index
from cpc.eval.protocol import EvalProtocol
from cpc.models.projection import principal_components

DEFAULT = EvalProtocol()  # k and temperature default to the evaluation protocol's

Backend = Literal["faiss", "torch"]

#: queries per similarity chunk of the torch backend
QUERY_BATCH = 4096


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = DEFAULT.k,
    temperature: float = DEFAULT.temperature,
    backend: Backend = "faiss",
    batch_size: int = QUERY_BATCH,
    standardize: bool = False,
    exact_max: int = DEFAULT.knn_exact_max,
    pca: int = 0,
) -> torch.Tensor:
    """Class scores of a temperature-weighted kNN vote.

    Defaults follow DINO: ``k=20`` neighbours and ``T=0.07``. DINO reports that 20 neighbours
    is consistently better than 10, 100 or 200; a small ``T`` (the InfoNCE temperature of
    Wu et al.) makes the nearest few neighbours dominate the vote while far ones still break
    ties, so the result is robust to ``k``. ``T -> inf`` is a plain majority vote and
    ``T -> 0`` is 1-NN.

    The vote of query ``q`` for class ``c`` is ``sum_{i in topk(q), y_i = c} exp(s_i / T)``,
    here divided by ``exp(max_i s_i / T)`` so that it cannot overflow for small ``T``. This
    per-query factor changes neither the ranking of classes nor their normalised
    probabilities; the nearest neighbour's weight is 1 and every score lies in ``[0, k]``.

    Args:
        train_features: features of the labelled set; normalised here, need not be beforehand.
        train_labels: integer labels in ``[0, num_classes)``.
        query_features: features to classify, same dim ``D`` as the training features.
        num_classes: number of classes ``C``.
        k: neighbours per query. If larger than ``N`` it is clipped to ``N`` (every training
            feature votes), so tiny labelled sets still work.
        temperature: ``T > 0`` in ``exp(s / T)``.
        backend: ``"faiss"`` (fast; on the GPU when faiss has GPU support) or ``"torch"``
            (exact brute force on the features' device; the reference).
        batch_size: queries per similarity chunk of the torch backend, bounding its memory to
            ``batch_size * N`` floats. Faiss blocks internally and ignores it.
        standardize: subtract the training features' mean and divide by their std
            (:func:`cpc.eval.features.standardization`) before normalising; see the module
            docstring.
        exact_max: the faiss backend searches banks of up to ``exact_max`` rows exactly and
            larger ones with an approximate IVF index (:mod:`cpc.eval.index`).
        pca: if > 0 and below ``D``, both sets are first projected onto the bank's top ``pca``
            principal components (:func:`cpc.models.projection.principal_components`); with
            ``standardize`` that is PCA whitening.

    Returns:
        Scores ``(Q, C)`` (float32, on the queries' device); ``argmax(dim=1)`` is the
        prediction.

    Shape:
        - train_features: ``(N, D)``
        - train_labels: ``(N,)``
        - query_features: ``(Q, D)``
        - output: ``(Q, C)``

    Raises:
        ValueError: on mismatched shapes, an empty training set, labels outside
            ``[0, num_classes)``, non-finite features, ``k < 1``, ``temperature <= 0`` or an
            unknown backend.
    """
    return _predict(
        train_features,
        train_labels,
        [query_features],
        num_classes,
        k,
        temperature,
        backend,
        batch_size,
        standardize,
        exact_max,
        pca,
    )[0]


def _predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_sets: Sequence[torch.Tensor],
    num_classes: int,
    k: int,
    temperature: float,
    backend: Backend,
    batch_size: int,
    standardize: bool,
    exact_max: int,
    pca: int = 0,
) -> list[torch.Tensor]:
    """:func:`knn_predict` of each query set ``(Q_i, D)``: scores ``(Q_i, C)``, one search of
    one bank (projected, standardised, normalised and indexed once)."""
    for query_features in query_sets:
        _check_features(train_features, query_features)
    _check_inputs(train_features, train_labels, query_sets, num_classes, k, temperature)
    k = min(k, train_features.shape[0])
    scores = []
    for query_features, (sims, indices) in zip(
        query_sets,
        _search(train_features, query_sets, k, backend, batch_size, standardize, exact_max, pca),
        strict=True,
    ):
        weights = torch.exp((sims - sims[:, :1]) / temperature)  # (Q, k), nearest has weight 1
        device = query_features.device
        neighbour_labels = train_labels.to(device, torch.long)[indices]  # (Q, k)
        votes = torch.zeros(query_features.shape[0], num_classes, device=device)
        scores.append(votes.scatter_add_(1, neighbour_labels, weights))  # (Q, C)
    return scores


def knn_neighbours(
    train_features: torch.Tensor,
    query_features: torch.Tensor,
    k: int = DEFAULT.k,
    backend: Backend = "faiss",
    batch_size: int = QUERY_BATCH,
    standardize: bool = False,
    exact_max: int = DEFAULT.knn_exact_max,
    pca: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's ``k`` most cosine-similar training features, nearest first: the search
    behind :func:`knn_predict`, for anyone who wants the neighbours themselves.

    Args:
        train_features, query_features, backend, batch_size, standardize, exact_max, pca: as
            in :func:`knn_predict`.
        k: neighbours per query, in ``[1, N]``.

    Returns:
        ``(similarities, indices)``: cosine similarities (float32) and row indices into
        ``train_features`` (int64), on the queries' device.

    Shape:
        - train_features: ``(N, D)``; query_features: ``(Q, D)``
        - output: ``(Q, k)`` each

    Raises:
        ValueError: on features that are not 2-D or differ in ``D``, ``k`` outside
            ``[1, N]``, ``batch_size < 1`` or an unknown backend.
    """
    _check_features(train_features, query_features)
    return _search(
        train_features, [query_features], k, backend, batch_size, standardize, exact_max, pca
    )[0]


def _search(
    train_features: torch.Tensor,
    query_sets: Sequence[torch.Tensor],
    k: int,
    backend: Backend,
    batch_size: int,
    standardize: bool,
    exact_max: int,
    pca: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`knn_neighbours` of each query set, the bank projected (``pca``), transformed and
    indexed once."""
    if not 1 <= k <= len(train_features):
        raise ValueError(f"k must be in [1, {len(train_features)}] (the bank size), got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if backend not in ("faiss", "torch"):
        raise ValueError(f"backend must be 'faiss' or 'torch', got {backend!r}")
    if 0 < pca < train_features.shape[1]:
        mean, basis, _ = principal_components(train_features.float(), pca)  # (D,), (D, pca)
        train_features = _project(train_features, mean, basis)  # (N, pca)
        query_sets = [_project(query, mean, basis) for query in query_sets]  # (Q, pca) each
    cosine = cosine_transform(train_features, standardize)
    if backend == "faiss":
        index = build_index(train_features, cosine, exact_max=exact_max)
        found = [search_index(index, query, k, cosine) for query in query_sets]
    else:
        bank = cosine(train_features)
        found = [_search_torch(bank, cosine(query), k, batch_size) for query in query_sets]
    return [  # (Q, k) each, on the queries' device
        (sims.to(query.device), indices.to(query.device))
        for query, (sims, indices) in zip(query_sets, found, strict=True)
    ]


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    num_classes: int,
    k: int = DEFAULT.k,
    temperature: float = DEFAULT.temperature,
    backend: Backend = "faiss",
    standardize: bool = False,
    pca: int = 0,
    exact_max: int = DEFAULT.knn_exact_max,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy of :func:`knn_predict`, as fractions in ``[0, 1]``.

    ``top5`` is the top-``min(5, C)`` accuracy, so it is 1.0 when ``C <= 5`` (the true label is
    always among the 5 best of at most 5 classes). Classes that received no vote tie at 0 and
    may fill the last top-5 slots in any order.

    Args:
        train_features, train_labels, query_features, num_classes, k, temperature, backend,
        standardize, exact_max: as in :func:`knn_predict`.
        query_labels: true labels of the queries.
        pca: if > 0 and below ``D``, both sets are first projected onto the bank's top ``pca``
            principal components (:func:`cpc.models.projection.principal_components`); with
            ``standardize`` that is PCA whitening.

    Returns:
        ``{"top1": float, "top5": float}``.

    Shape:
        - query_labels: ``(Q,)``; the rest as in :func:`knn_predict`.
    """
    queries = {"query": (query_features, query_labels)}
    return knn_accuracies(
        train_features,
        train_labels,
        queries,
        num_classes,
        k,
        temperature,
        backend,
        standardize,
        pca,
        exact_max,
    )["query"]


def knn_accuracies(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    queries: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    k: int = DEFAULT.k,
    temperature: float = DEFAULT.temperature,
    backend: Backend = "faiss",
    standardize: bool = False,
    pca: int = 0,
    exact_max: int = DEFAULT.knn_exact_max,
) -> dict[str, dict[str, float]]:
    """:func:`knn_accuracy` of several query sets against one bank, which is projected
    (``pca``), standardised, normalised and indexed once: ``{name: {"top1", "top5"}}`` for
    ``queries = {name: (features (Q, D), labels (Q,))}`` (e.g. the test and val splits).
    """
    for name, (query_features, query_labels) in queries.items():
        if query_labels.shape != (query_features.shape[0],):
            raise ValueError(
                f"query_labels must have shape ({query_features.shape[0]},) to match "
                f"query_features, got {tuple(query_labels.shape)} ({name})"
            )
        if query_features.shape[0] == 0:
            raise ValueError(f"query set is empty ({name}): accuracy is undefined")
    query_sets = [features for features, _ in queries.values()]
    scores = _predict(
        train_features,
        train_labels,
        query_sets,
        num_classes,
        k,
        temperature,
        backend,
        QUERY_BATCH,
        standardize,
        exact_max,
        pca,  # fitted on the bank once for every query set
    )
    return {
        name: _accuracy(score, labels, num_classes)
        for (name, (_, labels)), score in zip(queries.items(), scores, strict=True)
    }


def _project(features: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(x - mean) @ basis`` of ``features`` ``(n, D)``, ``CHUNK // 8`` rows at a time (no
    centred copy of the whole set): ``(n, pca)`` float32 on the features' device."""
    mean, basis = mean.to(features.device), basis.to(features.device)
    return torch.cat([(rows.float() - mean) @ basis for rows in features.split(CHUNK // 8)])


def _accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Top-1 and top-``min(5, C)`` accuracy of scores ``(Q, C)`` against labels ``(Q,)``."""
    top = scores.topk(min(5, num_classes), dim=1).indices  # (Q, 5), best first
    hits = top == labels.to(top.device, torch.long)[:, None]  # (Q, 5)
    return {
        "top1": hits[:, 0].float().mean().item(),
        "top5": hits.any(dim=1).float().mean().item(),
    }


def _search_torch(
    train: torch.Tensor, query: torch.Tensor, k: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` inner products by chunked matmul: ``(Q, k)`` sims and indices."""
    query = query.to(train.device)
    sims, indices = [], []
    for chunk in query.split(batch_size):
        top = (chunk @ train.T).topk(k, dim=1)  # (b, N) -> (b, k)
        sims.append(top.values)
        indices.append(top.indices)
    if not sims:  # no queries
        return query.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=train.device)
    return torch.cat(sims), torch.cat(indices)


def cosine_transform(train: torch.Tensor, standardize: bool) -> Transform:
    """Rows ``(n, D)`` -> float32 unit rows ``(n, D)``, first standardised with ``train``'s
    mean and std when ``standardize``: applied chunk by chunk to the bank and the queries."""
    mean, std = standardization(train) if standardize else (None, None)  # (D,) each

    def transform(rows: torch.Tensor) -> torch.Tensor:
        rows = rows.float()
        if mean is not None:
            rows = (rows - mean.to(rows.device)) / std.to(rows.device)
        return F.normalize(rows, dim=1)

    return transform


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_sets: Sequence[torch.Tensor],
    num_classes: int,
    k: int,
    temperature: float,
) -> None:
    """Raise a one-line ValueError naming the first bad argument."""
    if train_features.shape[0] == 0:
        raise ValueError("train_features is empty: kNN needs at least one labelled feature")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(
            f"train_labels must have shape ({train_features.shape[0]},) to match "
            f"train_features, got {tuple(train_labels.shape)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"train_labels must be integers, got dtype {train_labels.dtype}")
    low, high = int(train_labels.min()), int(train_labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"train_labels must lie in [0, {num_classes}), got values in [{low}, {high}]"
        )
    named = [("train_features", train_features)] + [("query_features", q) for q in query_sets]
    for name, features in named:
        if not all(torch.isfinite(rows).all() for rows in features.split(CHUNK)):  # bounded
            raise ValueError(f"{name} contains NaN or inf values")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_features(train_features: torch.Tensor, query_features: torch.Tensor) -> None:
    """Raise a one-line ValueError unless both are 2-D with the same feature dim ``D``."""
    if train_features.ndim != 2 or query_features.ndim != 2:
        raise ValueError(
            "features must be 2-D (N, D), got train_features "
            f"{tuple(train_features.shape)} and query_features {tuple(query_features.shape)}"
        )
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"feature dims differ: train_features has D={train_features.shape[1]}, "
            f"query_features has D={query_features.shape[1]}"
        )
