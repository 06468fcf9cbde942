"""PCA whitening of pooled latent grids: the compact feature ``encoder(images)`` returns.

A fitted :class:`WhitenedPCA` maps a feature ``(B, F)`` to its coordinates on the training
features' top ``dim`` principal directions, each scaled to unit variance: ``(B, dim)``. It is
unsupervised (no labels), fitted once on the train split's features of the final encoder, and
stored as buffers, so a checkpoint carries it. Whitening makes every kept direction count
once in a cosine or a linear probe's penalty instead of as often as it is repeated across the
grid (Jegou & Chum, 2012, PCA whitening for retrieval).
"""

from __future__ import annotations

import torch
from torch import nn


def principal_components(
    features: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean ``(F,)``, top ``dim`` principal directions ``(F, dim)`` and their variances
    ``(dim,)`` of ``features`` ``(N, F)``, largest variance first.

    Exact: the eigenvectors of the covariance, computed in float64 (deterministic, unlike
    randomised PCA); returned in the dtype of ``features``.
    """
    n, f = features.shape
    if not 1 <= dim <= f or n < 2:
        raise ValueError(
            f"cannot keep {dim} principal directions of {n} features of size {f}: "
            f"keep between 1 and {f}, fitted on at least 2 images"
        )
    chunk = 8192  # float64 copies of 8192 rows at a time: bounded memory
    mean = features.sum(dim=0, dtype=torch.float64) / n  # (F,)
    covariance = features.new_zeros(f, f, dtype=torch.float64)
    for start in range(0, n, chunk):
        centred = features[start : start + chunk].double() - mean  # (chunk, F)
        covariance += centred.T @ centred
    covariance /= n - 1  # (F, F)
    variances, vectors = torch.linalg.eigh(covariance)  # ascending
    basis, variances = vectors[:, f - dim :].flip(1), variances[f - dim :].flip(0)
    return mean.to(features.dtype), basis.to(features.dtype), variances.to(features.dtype)


class WhitenedPCA(nn.Module):
    """``x (B, F) -> (x - mean) @ basis  (B, dim)``, with ``basis`` scaled so each output has
    unit variance on the features it was fitted on.

    Unfitted until :meth:`fit`; :meth:`reset_parameters` unfits it (a re-initialised encoder
    needs its own fit). Buffers take the shapes of a loaded state dict, so a fitted projection
    loads into a fresh module.

    Args:
        dim: number of principal directions kept.
        eps: variance floor of the whitening scale (directions the data does not span).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.eps = dim, eps
        self.register_buffer("mean", torch.zeros(0))  # (F,) once fitted
        self.register_buffer("basis", torch.zeros(0, dim))  # (F, dim) once fitted

    @property
    def fitted(self) -> bool:
        return self.mean.numel() > 0

    def reset_parameters(self) -> None:
        self.mean = self.mean.new_zeros(0)
        self.basis = self.basis.new_zeros(0, self.dim)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> WhitenedPCA:
        """Fit on ``features`` ``(N, F)`` (:func:`principal_components`, ``F >= dim``);
        returns ``self``."""
        mean, basis, variances = principal_components(features, self.dim)
        scale = variances.clamp_min(self.eps).rsqrt()  # (dim,) unit variance per direction
        self.mean = mean.float().to(self.basis.device)
        self.basis = (basis * scale).float().to(self.basis.device)
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F) -> (B, dim)``."""
        if not self.fitted:
            raise RuntimeError(
                "the compact projection is not fitted: load the run's last.ckpt (`cpc fit` fits "
                "it at the end of training and saves it there only; the best and mid-run "
                "checkpoints leave it unfitted), take the latent grid with "
                "encoder.forward_features(images), or fit it: encoder.fit_compact(pooled)"
            )
        if features.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"the compact projection was fitted on {self.mean.shape[0]} features, got "
                f"{features.shape[1]}: images of another size need a new fit"
            )
        return (features.to(self.basis.dtype) - self.mean) @ self.basis  # (B, F) @ (F, dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("mean", "basis"):  # take the saved shapes (fitted or not)
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, fitted={self.fitted}"
