import pytest
import torch

from cpc.models.encoder import ResNetEncoder


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_shapes_and_num_features(norm):
    enc = ResNetEncoder(in_channels=3, width=8, stages=(1, 1, 1), norm=norm)
    grid = enc.forward_features(torch.rand(2, 3, 32, 32))
    assert grid.shape == (2, enc.num_features, 7, 7) and enc.num_features == 32
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 32)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_no_leak_between_patches_or_images_in_train_mode(norm):
    torch.manual_seed(0)
    enc = ResNetEncoder(width=8, norm=norm).train()
    images = torch.rand(3, 1, 28, 28)
    other = images.clone()
    other[1] = torch.rand(1, 28, 28)  # change image 1 only
    other[0, :, 24:] = 0.0  # and the bottom rows of image 0 (only its last patch row sees them)
    a, b = enc.forward_features(images), enc.forward_features(other)
    torch.testing.assert_close(a[2], b[2])
    torch.testing.assert_close(a[0, :, :5], b[0, :, :5])
    assert not torch.allclose(a[1], b[1])


def test_batchnorm_leaks_which_is_why_it_is_opt_in():
    torch.manual_seed(0)
    enc = ResNetEncoder(width=8, norm="batch").train()
    images = torch.rand(3, 1, 28, 28)
    other = images.clone()
    other[1] = torch.rand(1, 28, 28)
    assert not torch.allclose(enc.forward_features(images)[2], enc.forward_features(other)[2])


def test_channel_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match="set encoder in_channels"):
        ResNetEncoder(in_channels=3).forward_features(torch.rand(1, 1, 28, 28))
