import pytest
import torch

from cpc.models.encoder import ResNetEncoder
from cpc.models.projection import WhitenedPCA, principal_components


def correlated(n=500, f=12, seed=0):
    """Features with very unequal, correlated directions: (n, f)."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(f, f, generator=g) * torch.logspace(0, 2, f)
    return torch.randn(n, f, generator=g) @ mixing + 5.0


def test_fitted_projection_whitens_its_training_features():
    x = correlated()
    out = WhitenedPCA(6).fit(x)(x)  # (500, 6)
    assert out.shape == (500, 6)
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(out.T), torch.eye(6), atol=1e-3, rtol=0)


def test_projection_keeps_the_largest_variance_directions_first():
    x = correlated()
    pca = WhitenedPCA(3).fit(x)
    directions = pca.basis / pca.basis.norm(dim=0)  # (F, 3) unit columns
    variances = ((x - x.mean(0)) @ directions).var(0)
    assert variances[0] > variances[1] > variances[2]
    assert variances[2] > (x - x.mean(0)).var(0).min()  # not the low-variance tail


def test_unfitted_mismatched_or_too_small_inputs_are_one_line_errors():
    pca = WhitenedPCA(4)
    with pytest.raises(RuntimeError, match="not fitted"):
        pca(torch.randn(2, 8))
    pca.fit(torch.randn(50, 8))
    with pytest.raises(ValueError, match="fitted on 8 features, got 9"):
        pca(torch.randn(2, 9))
    with pytest.raises(ValueError, match="cannot keep 4 principal directions"):
        WhitenedPCA(4).fit(torch.randn(50, 3))


def test_reset_unfits_and_a_fitted_state_loads_into_a_fresh_module():
    x = correlated()
    pca = WhitenedPCA(5).fit(x)
    fresh = WhitenedPCA(5)
    fresh.load_state_dict(pca.state_dict())
    assert fresh.fitted
    torch.testing.assert_close(fresh(x), pca(x))
    pca.reset_parameters()
    assert not pca.fitted


def test_encoder_with_compact_dim_returns_the_whitened_pooled_grid():
    torch.manual_seed(0)
    enc = ResNetEncoder(width=8, pool_size=2, compact_dim=10).eval()
    images = torch.rand(40, 1, 28, 28)
    assert enc.compact_features == 10
    with pytest.raises(RuntimeError, match="not fitted"):
        enc(images)
    with torch.no_grad():
        pooled = enc.pool(enc.forward_features(images))  # (40, 64)
        enc.fit_compact(pooled)
        out = enc(images)
    assert out.shape == (40, 10)
    torch.testing.assert_close(out, enc.compact_projection(pooled))
    torch.testing.assert_close(torch.cov(out.T), torch.eye(10), atol=1e-3, rtol=0)


def test_encoder_checkpoint_round_trip_keeps_the_fitted_projection():
    torch.manual_seed(0)
    enc = ResNetEncoder(width=8, compact_dim=4).eval()
    images = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        enc.fit_compact(enc.pool(enc.forward_features(images)))
    fresh = ResNetEncoder(width=8, compact_dim=4).eval()
    fresh.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), enc(images))


def test_compact_dim_above_the_pooled_grid_is_refused_when_the_encoder_is_built():
    """Not after training, where the end-of-fit PCA would fail: D=16, pool_size 1 -> 16 values."""
    assert ResNetEncoder(width=8, compact_dim=16).compact_features == 16
    with pytest.raises(
        ValueError, match=r"^compact_dim 17 is more than the 16 values .* pool_size"
    ):
        ResNetEncoder(width=8, compact_dim=17)
    assert ResNetEncoder(width=8, pool_size=2, compact_dim=17).compact_features == 17  # 64 values


def test_principal_components_are_orthonormal_and_ordered_by_variance():
    torch.manual_seed(0)
    x = torch.randn(500, 6) * torch.tensor([5.0, 1.0, 3.0, 0.1, 2.0, 0.5])
    mean, basis, _ = principal_components(x, 3)
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), atol=1e-5, rtol=0)
    variances = ((x - mean) @ basis).var(dim=0)
    assert variances[0] > variances[1] > variances[2]
    top_axes = basis.abs().argmax(dim=0).tolist()  # the axes of largest variance, in order
    assert top_axes == [0, 2, 4]


def test_principal_components_in_chunks_match_the_whole_covariance():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 5, generator=generator) @ torch.randn(5, 5, generator=generator) + 3
    mean, basis, _ = principal_components(x, 2)  # more rows than one chunk
    centred = x.double() - x.double().mean(dim=0)
    _, vectors = torch.linalg.eigh(centred.T @ centred / (len(x) - 1))
    reference = vectors[:, -2:].flip(1).float()
    torch.testing.assert_close(mean, x.double().mean(dim=0).float())
    # the same subspace: the projectors onto it agree (eigenvectors are unique only up to sign)
    torch.testing.assert_close(basis @ basis.T, reference @ reference.T, rtol=0, atol=1e-5)
    torch.testing.assert_close(basis.T @ basis, torch.eye(2), rtol=0, atol=1e-5)  # orthonormal
