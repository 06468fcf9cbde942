"""Weighted k-nearest-neighbour classifier on frozen features (the DINO protocol).

Wu et al. (2018), "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
as DINO uses it (``eval_knn.py``): features are L2-normalised, each query takes its ``k`` most
cosine-similar bank features, and neighbour ``i`` votes for its label with weight
``exp(s_i / T)``. With the protocol's ``knn_standardize`` each feature is first standardised
with the bank's mean and std, as the linear probe's inputs are, so that every dimension counts
in the cosine, not only the largest ones; with ``knn_pca`` both sides are first projected onto
the bank's top principal components.

One object, built from the evaluation protocol, fitted once on a bank, asked many times::

    knn = KNN(protocol).fit(train_features, train_labels, num_classes=10)  # (N, D), (N,)
    knn.predict(test_features)  # (Q, C) class scores
    knn.accuracy(test_features, test_labels)  # {"top1": ..., "top5": ...}
    knn.neighbours(test_features, k=8)  # (Q, 8) similarities and bank indices

Two backends give the same scores (ties aside): ``"faiss"`` (:mod:`cpc.eval.index`: exact up to
``knn_exact_max`` bank rows, IVF above; on the GPU when faiss has GPU support) and ``"torch"``, a
chunked brute-force matmul, the reference. The bank is transformed chunk by chunk, so a bank in
a memory-mapped file is not copied whole.

Shape letters: ``N`` bank rows, ``Q`` queries, ``D`` feature dim, ``C`` classes, ``k``
neighbours.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from cpc.eval.features import standardization
from cpc.eval.index import CHUNK, Transform, build_index, search_index
from cpc.eval.protocol import EvalProtocol
from cpc.models.projection import principal_components

Backend = Literal["faiss", "torch"]

#: queries per similarity chunk of the torch backend (its memory: QUERY_BATCH x N floats)
QUERY_BATCH = 4096


class KNN:
    """The temperature-weighted kNN vote of a protocol (``k``, ``temperature``,
    ``knn_standardize``, ``knn_pca``, ``knn_exact_max``); :meth:`fit` a bank, then
    :meth:`predict`, :meth:`accuracy` or :meth:`neighbours` of any number of query sets.

    The vote of query ``q`` for class ``c`` is ``sum_{i in topk(q), y_i = c} exp(s_i / T)``,
    divided by the nearest neighbour's weight so that it cannot overflow for small ``T``
    (the ranking is unchanged; every score lies in ``[0, k]``). ``T -> inf`` is a majority
    vote, ``T -> 0`` is 1-NN. A ``k`` above the bank size is clipped to it.

    Raises:
        ValueError: one line naming the first bad argument: ``k < 1``, ``temperature <= 0``,
            an unknown backend, a bank that is empty, not 2-D or not finite, labels of the
            wrong shape, type or range, queries of another feature dim.
    """

    def __init__(
        self,
        protocol: EvalProtocol | None = None,
        backend: Backend = "faiss",
        batch_size: int = QUERY_BATCH,
    ) -> None:
        protocol = protocol or EvalProtocol()
        if protocol.k < 1:
            raise ValueError(f"k must be >= 1, got {protocol.k}")
        if not protocol.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {protocol.temperature}")
        if backend not in ("faiss", "torch"):
            raise ValueError(f"backend must be 'faiss' or 'torch', got {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.protocol, self.backend, self.batch_size = protocol, backend, batch_size
        self.labels: torch.Tensor | None = None

    def fit(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        num_classes: int | None = None,
    ) -> KNN:
        """Index the bank ``features (N, D)``; ``labels (N,)`` (integers in
        ``[0, num_classes)``; ``num_classes`` defaults to the largest label + 1) are needed
        for :meth:`predict` and :meth:`accuracy`, not for :meth:`neighbours`."""
        _check_bank(features)
        if labels is not None:
            num_classes = _check_labels(labels, len(features), num_classes)
        self.labels, self.num_classes, self.dim = labels, num_classes, features.shape[1]
        self.size = len(features)
        self._project = _pca_projection(features, self.protocol.knn_pca)
        features = self._project(features)  # (N, D') with D' = knn_pca when it applies
        self._cosine = cosine_transform(features, self.protocol.knn_standardize)
        if self.backend == "faiss":
            self._index = build_index(features, self._cosine, exact_max=self.protocol.knn_exact_max)
        else:
            self._bank = self._cosine(features)  # (N, D') unit rows
        return self

    def neighbours(
        self, queries: torch.Tensor, k: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's ``k`` (default: the protocol's, clipped to ``N``) most cosine-similar
        bank rows, nearest first: similarities ``(Q, k)`` float32 and bank indices ``(Q, k)``
        int64, on the queries' device."""
        if not hasattr(self, "_cosine"):
            raise RuntimeError("KNN.fit(bank) must come before searching it")
        k = min(self.protocol.k, self.size) if k is None else k
        if not 1 <= k <= self.size:
            raise ValueError(f"k must be in [1, {self.size}] (the bank size), got {k}")
        _check_queries(queries, self.dim)
        projected = self._project(queries)  # (Q, D')
        if self.backend == "faiss":
            sims, indices = search_index(self._index, projected, k, self._cosine)
        else:
            sims, indices = _search_torch(self._bank, self._cosine(projected), k, self.batch_size)
        return sims.to(queries.device), indices.to(queries.device)

    def predict(self, queries: torch.Tensor) -> torch.Tensor:
        """Class scores ``(Q, C)`` (float32, on the queries' device) of the weighted vote;
        ``argmax(dim=1)`` is the prediction."""
        if self.labels is None:
            raise RuntimeError("KNN.fit(bank, labels) must be given labels to predict")
        sims, indices = self.neighbours(queries)  # (Q, k) each
        weights = torch.exp((sims - sims[:, :1]) / self.protocol.temperature)  # nearest: 1
        neighbour_labels = self.labels.to(queries.device, torch.long)[indices]  # (Q, k)
        votes = torch.zeros(len(queries), self.num_classes, device=queries.device)
        return votes.scatter_add_(1, neighbour_labels, weights)  # (Q, C)

    def accuracy(self, queries: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``{"top1", "top5"}`` fractions of :meth:`predict` against ``labels (Q,)``;
        ``top5`` is top-``min(5, C)`` (1.0 when ``C <= 5``)."""
        if labels.shape != (len(queries),):
            raise ValueError(
                f"query labels must have shape ({len(queries)},) to match the queries, got "
                f"{tuple(labels.shape)}"
            )
        if len(queries) == 0:
            raise ValueError("the query set is empty: accuracy is undefined")
        scores = self.predict(queries)  # (Q, C)
        top = scores.topk(min(5, self.num_classes), dim=1).indices  # (Q, 5), best first
        hits = top == labels.to(top.device, torch.long)[:, None]  # (Q, 5)
        return {
            "top1": hits[:, 0].float().mean().item(),
            "top5": hits.any(dim=1).float().mean().item(),
        }


def cosine_transform(bank: torch.Tensor, standardize: bool) -> Transform:
    """Rows ``(n, D)`` -> float32 unit rows ``(n, D)``, first standardised with ``bank``'s
    mean and std when ``standardize``: applied chunk by chunk to the bank and the queries."""
    mean, std = standardization(bank) if standardize else (None, None)  # (D,) each

    def transform(rows: torch.Tensor) -> torch.Tensor:
        rows = rows.float()
        if mean is not None:
            rows = (rows - mean.to(rows.device)) / std.to(rows.device)
        return F.normalize(rows, dim=1)

    return transform


def _pca_projection(bank: torch.Tensor, dims: int) -> Transform:
    """``(n, D) -> (n, dims)``: onto ``bank``'s top ``dims`` principal components, ``CHUNK // 8``
    rows at a time; the identity when ``dims`` is 0 or not below ``D``."""
    if not 0 < dims < bank.shape[1]:
        return lambda rows: rows
    mean, basis, _ = principal_components(bank.float(), dims)  # (D,), (D, dims)

    def project(rows: torch.Tensor) -> torch.Tensor:
        m, b = mean.to(rows.device), basis.to(rows.device)
        return torch.cat([(chunk.float() - m) @ b for chunk in rows.split(CHUNK // 8)])

    return project


def _search_torch(
    bank: torch.Tensor, queries: torch.Tensor, k: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` inner products by chunked matmul: ``(Q, k)`` sims and indices."""
    queries = queries.to(bank.device)
    if len(queries) == 0:
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=bank.device)
    found = [(chunk @ bank.T).topk(k, dim=1) for chunk in queries.split(batch_size)]  # (b, k)
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def _check_bank(features: torch.Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got bank {tuple(features.shape)}")
    if len(features) == 0:
        raise ValueError("the bank is empty: kNN needs at least one feature")
    _check_finite(features, "bank")


def _check_queries(queries: torch.Tensor, dim: int) -> None:
    if queries.ndim != 2:
        raise ValueError(f"features must be 2-D (Q, D), got queries {tuple(queries.shape)}")
    if queries.shape[1] != dim:
        raise ValueError(f"feature dims differ: the bank has D={dim}, queries D={queries.shape[1]}")
    _check_finite(queries, "queries")


def _check_finite(features: torch.Tensor, name: str) -> None:
    if not all(torch.isfinite(rows).all() for rows in features.split(CHUNK)):  # bounded memory
        raise ValueError(f"the {name} contain NaN or inf values")


def _check_labels(labels: torch.Tensor, size: int, num_classes: int | None) -> int:
    """The number of classes, after a one-line ValueError for bad bank labels."""
    if labels.shape != (size,):
        raise ValueError(
            f"bank labels must have shape ({size},) to match the bank, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"bank labels must be integers, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    num_classes = high + 1 if num_classes is None else num_classes
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"bank labels must lie in [0, {num_classes}), got values in [{low}, {high}]"
        )
    return num_classes
