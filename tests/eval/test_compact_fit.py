"""The report whitens the random-init baseline's compact feature on the images ``cpc fit``
whitens the trained encoder's on, so the two compact rows differ only by training."""

import copy

import pytest
import torch
from test_report import Stripes

import cpc.eval.features as features_module
from cpc.eval.features import compact_fit_features, extract_feature_sets
from cpc.eval.protocol import EvalProtocol
from cpc.eval.split_features import extract_splits
from cpc.models.encoder import ResNetEncoder


def compact_features(encoder, loader):
    """``encoder(images)`` of every image of ``loader``, ``(N, compact_dim)``."""
    feats, _ = extract_feature_sets(
        {"m": encoder}, loader, progress=False, compact=True, project=True
    )
    return feats["m_compact"]


@pytest.mark.parametrize("fit_images", [20, 1000])  # a subset of the 48 train images; all
def test_an_unfitted_projection_is_fitted_on_the_images_cpc_fit_uses(monkeypatch, fit_images):
    monkeypatch.setattr(features_module, "COMPACT_FIT_IMAGES", fit_images)
    torch.manual_seed(0)
    encoder = ResNetEncoder(in_channels=1, width=8, pool_size=2, compact_dim=6)
    dm = Stripes()
    loader = dm.eval_dataloader("train")
    features, _ = extract_splits(
        {"random_init": encoder}, {"train": loader}, EvalProtocol(), "cpu", False, "test"
    )
    fitted_like_fit = copy.deepcopy(encoder)
    pooled = compact_fit_features(fitted_like_fit, dm)
    assert len(pooled) == min(fit_images, 48)
    fitted_like_fit.fit_compact(pooled)
    got = features["train"]["random_init_compact"]  # (48, 6)
    torch.testing.assert_close(got, compact_features(fitted_like_fit, loader))
    if fit_images < 48:  # whitened on all 48 images, the feature is another one
        monkeypatch.setattr(features_module, "COMPACT_FIT_IMAGES", 48)
        on_all = copy.deepcopy(encoder)
        on_all.fit_compact(compact_fit_features(on_all, dm))
        assert not torch.allclose(got, compact_features(on_all, loader), atol=1e-3)
