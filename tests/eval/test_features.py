import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cpc.eval.features import (
    extract_feature_sets,
    extract_features,
    pixel_features,
    pool_grid,
    standardization,
)
from cpc.models.encoder import ResNetEncoder


class RecordingEncoder(nn.Module):
    """A tiny encoder with the contract (``forward_features`` -> grid) that records its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 4, stride=4)  # (B, 1, 8, 8) -> (B, 3, 2, 2)
        self.dropout = nn.Dropout(0.5)
        self.num_features = 3
        self.modes: list[bool] = []

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        assert torch.is_inference_mode_enabled()
        return self.dropout(self.conv(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images).mean(dim=(2, 3))


def uint8_loader(n: int = 10, batch_size: int = 4, channels: int = 1, side: int = 8):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (n, channels, side, side), dtype=torch.uint8, generator=generator
    )
    labels = torch.arange(n) % 3
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size), images, labels


def test_mean_pooling_equals_calling_the_encoder_and_keeps_labels_in_order():
    torch.manual_seed(0)
    encoder = ResNetEncoder(in_channels=1, width=8)
    loader, images, labels = uint8_loader(n=10, batch_size=4, side=16)
    feats, got_labels = extract_features(encoder.eval(), loader, progress=False)
    assert feats.shape == (10, encoder.num_features) and feats.dtype == torch.float32
    assert got_labels.dtype == torch.int64 and torch.equal(got_labels, labels)
    with torch.no_grad():
        expected = encoder(images.float() / 255)
    torch.testing.assert_close(feats, expected)


def test_grid_pooling_keeps_a_2x2_layout():
    grid = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    pooled = pool_grid(grid, "grid")
    assert pooled.shape == (2, 12)
    # (B, D, 2, 2) flattened: feature d's four quadrants are adjacent, top-left first
    top_left = grid[:, :, :2, :2].mean(dim=(2, 3))  # (B, D)
    torch.testing.assert_close(pooled.view(2, 3, 4)[:, :, 0], top_left)
    torch.testing.assert_close(pool_grid(grid, "mean"), grid.mean(dim=(2, 3)))
    torch.testing.assert_close(pooled.view(2, 3, 4).mean(dim=2), pool_grid(grid, "mean"))
    with pytest.raises(ValueError, match="pooling must be"):
        pool_grid(grid, "max")


def test_full_pooling_keeps_every_latent_in_place():
    grid = torch.randn(2, 3, 4, 5)  # (B, D, Gh, Gw)
    full = pool_grid(grid, "full")
    assert full.shape == (2, 3 * 4 * 5)
    torch.testing.assert_close(full.view(2, 3, 4, 5)[:, :, 1, 2], grid[:, :, 1, 2])


def test_standardization_is_mean_and_std_with_constant_features_left_unscaled():
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    mean, std = standardization(features)
    torch.testing.assert_close(mean, torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(std, torch.tensor([2.0, 1.0]))  # constant column: scale 1


def test_eval_mode_is_used_and_every_submodule_mode_restored():
    encoder = RecordingEncoder()
    encoder.train()
    encoder.conv.eval()  # a mixed state, e.g. a frozen part inside a training net
    loader, _, _ = uint8_loader(n=6, batch_size=4)
    feats, _ = extract_features(encoder, loader, progress=False)
    assert encoder.modes == [False, False]  # two batches, both in eval mode
    assert encoder.training and encoder.dropout.training and not encoder.conv.training
    # eval mode means dropout is off: the same input gives the same features twice
    again, _ = extract_features(encoder, loader, progress=False)
    torch.testing.assert_close(feats, again)


def test_modes_are_restored_when_the_encoder_fails():
    encoder = RecordingEncoder().train()
    bad = [(torch.zeros(2, 5, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(RuntimeError):
        extract_features(encoder, bad, progress=False)
    assert all(m.training for m in encoder.modules())


def test_pixel_features_are_flattened_unit_floats():
    loader, images, labels = uint8_loader(n=5, batch_size=2, channels=3, side=4)
    feats, got_labels = pixel_features(loader, progress=False)
    assert feats.shape == (5, 3 * 4 * 4)
    torch.testing.assert_close(feats, images.flatten(1).float() / 255)
    assert torch.equal(got_labels, labels)


def test_several_encoders_share_one_pass_over_the_loader():
    torch.manual_seed(0)
    a, b = ResNetEncoder(width=8).eval(), ResNetEncoder(width=8).eval()
    loader, _, labels = uint8_loader(n=7, batch_size=3, side=16)
    passes = []

    def counting():
        passes.append(1)
        yield from loader

    feats, got_labels = extract_feature_sets(
        {"a": a, "b": b}, counting(), progress=False, pixels=True
    )
    assert len(passes) == 1 and set(feats) == {"a", "b", "pixels"}
    torch.testing.assert_close(feats["a"], extract_features(a, loader, progress=False)[0])
    torch.testing.assert_close(feats["b"], extract_features(b, loader, progress=False)[0])
    assert torch.equal(got_labels, labels)


def test_empty_loader_is_one_clear_error():
    with pytest.raises(ValueError, match="no batches"):
        extract_features(RecordingEncoder(), [], progress=False)


def test_bf16_features_on_bf16_gpus_only_and_close_to_float32(monkeypatch):
    import cpc.run.precision
    from cpc.eval.features import bf16_features

    monkeypatch.setattr(cpc.run.precision, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    assert not bf16_features("cpu")  # measured: bf16 moved the kNN on a CPU
    for capability, expected in (((9, 0), True), ((7, 5), False)):
        monkeypatch.setattr(cpc.run.precision, "cuda_capability", lambda c=capability: c)
        assert bf16_features("cuda") is expected

    torch.manual_seed(0)
    encoder = ResNetEncoder(in_channels=1, width=8)
    loader, _, _ = uint8_loader(n=6, batch_size=3, side=16)
    full = extract_feature_sets({"e": encoder}, loader, "full", progress=False, bf16=False)[0]
    half = extract_feature_sets({"e": encoder}, loader, "full", progress=False, bf16=True)[0]
    assert half["e"].dtype == torch.float32 and not torch.equal(half["e"], full["e"])
    torch.testing.assert_close(half["e"], full["e"], rtol=0.05, atol=0.05)
