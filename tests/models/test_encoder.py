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


@pytest.mark.parametrize("option", ["gradient_checkpointing", "channels_last"])
def test_memory_options_leave_outputs_and_gradients_unchanged(option):
    torch.manual_seed(0)
    plain = ResNetEncoder(width=8, stages=(1, 1)).train()
    other = ResNetEncoder(width=8, stages=(1, 1), **{option: True}).train()
    other.load_state_dict(plain.state_dict())
    images = torch.rand(2, 1, 28, 28)
    a, b = plain.forward_features(images), other.forward_features(images)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    grads = zip(plain.parameters(), other.parameters(), strict=True)
    for p, q in grads:
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)


def test_forward_features_is_encode_grid_of_patchify():
    enc = ResNetEncoder(width=8).eval()
    images = torch.rand(2, 1, 28, 28)
    patches = enc.patchify(images)
    assert patches.shape == (2, 6, 6, 1, 8, 8)
    torch.testing.assert_close(enc.encode_grid(patches), enc.forward_features(images))
    one = enc.encode_patches(patches[1, 2, 3][None])  # patch (2, 3) of image 1 alone
    torch.testing.assert_close(one[0], enc.forward_features(images)[1, :, 2, 3])


@pytest.mark.parametrize("pool_size", [1, 2, 3])
def test_forward_is_the_grid_averaged_to_pool_size_cells(pool_size):
    torch.manual_seed(0)
    enc = ResNetEncoder(width=8, pool_size=pool_size).eval()
    images = torch.rand(2, 1, 28, 28)
    grid = enc.forward_features(images)  # (2, 16, 6, 6)
    out = enc(images)
    assert out.shape == (2, enc.compact_features) == (2, 16 * pool_size**2)
    block = 6 // pool_size  # 6x6 grid -> pool_size x pool_size blocks of block x block codes
    first_cell = grid[:, :, :block, :block].mean(dim=(2, 3))  # (2, 16)
    torch.testing.assert_close(out.view(2, 16, pool_size, pool_size)[:, :, 0, 0], first_cell)


def test_pool_size_below_one_is_refused():
    with pytest.raises(ValueError, match="pool_size must be >= 1"):
        ResNetEncoder(pool_size=0)


@pytest.mark.parametrize(("width", "stages"), [(12, (1, 1)), (6, (1, 1))])
def test_group_norm_width_not_splitting_into_8_groups_is_one_clear_error(width, stages):
    # width 6 passes the stem (6 groups of 1) but its second stage has 12 channels
    with pytest.raises(ValueError, match=rf"width={width} gives stage \d .* multiple of 8"):
        ResNetEncoder(width=width, stages=stages)
    assert ResNetEncoder(width=width, stages=stages, norm="layer").num_features == width * 2
