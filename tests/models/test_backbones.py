"""The encoder contract, kept by every patch encoder, and the torchvision backbones' own checks."""

from functools import partial

import pytest
import torch
from helpers import QUICK, fit_args, write_image_folder
from torch import nn

from cpc.cli import cli_main
from cpc.models import ResNetEncoder, TorchvisionEncoder

#: every patch encoder, small: 3-channel 32x32 images -> 3x3 grids of 16x16 patches
ENCODERS = {
    "resnet_encoder": partial(ResNetEncoder, in_channels=3, width=8, patch_size=16, patch_stride=8),
    "resnet18": partial(TorchvisionEncoder, "resnet18", patch_size=16, patch_stride=8),
    "resnet50": partial(TorchvisionEncoder, "resnet50", patch_size=16, patch_stride=8),
    "resnet18_small_stem": partial(
        TorchvisionEncoder, patch_size=16, patch_stride=8, small_stem=True
    ),
}


def images(batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 32)


@pytest.mark.parametrize("name", ENCODERS)
def test_contract_shapes(name):
    torch.manual_seed(0)
    enc = ENCODERS[name](pool_size=2).eval()
    x = images(2)
    grid = enc.forward_features(x)
    assert grid.shape == (2, enc.num_features, 3, 3)
    assert enc(x).shape == (2, enc.compact_features) == (2, 4 * enc.num_features)
    torch.testing.assert_close(enc.encode_grid(enc.patchify(x)), grid)
    one = enc.encode_patches(enc.patchify(x)[1, 2, 0][None])  # patch (2, 0) of image 1 alone
    torch.testing.assert_close(one[0], grid[1, :, 2, 0], rtol=1e-4, atol=1e-5)
    grid.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ENCODERS)
def test_no_leak_between_patches_or_images_in_train_mode(name):
    torch.manual_seed(0)
    enc = ENCODERS[name]().train()
    x = images()
    other = x.clone()
    other[1] = torch.rand(3, 32, 32)  # change image 1 only
    other[0, :, 24:] = 0.0  # and the bottom rows of image 0 (only its last patch row sees them)
    a, b = enc.forward_features(x), enc.forward_features(other)
    torch.testing.assert_close(a[2], b[2])
    torch.testing.assert_close(a[0, :, :2], b[0, :, :2])
    assert not torch.allclose(a[1], b[1]) and not torch.allclose(a[0, :, 2], b[0, :, 2])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_resnets_have_groupnorm_and_no_batchnorm(arch):
    enc = TorchvisionEncoder(arch)
    norms = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    assert norms and all(m.num_groups == 32 for m in norms)
    assert enc.num_features == {"resnet18": 512, "resnet50": 2048}[arch]


def test_other_channel_counts_rebuild_the_first_conv():
    enc = TorchvisionEncoder(in_channels=1, patch_size=16, patch_stride=8)
    assert enc.forward_features(torch.rand(2, 1, 28, 28)).shape == (2, 512, 2, 2)
    with pytest.raises(ValueError, match="set encoder in_channels"):
        enc.forward_features(images())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg16"}, "unknown arch 'vgg16'"),
        ({"norm_groups": 24}, "norm_groups=24 must divide 64"),
        ({"pool_size": 0}, "pool_size must be >= 1"),
    ],
)
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TorchvisionEncoder(**kwargs)


@pytest.mark.parametrize("option", ["gradient_checkpointing", "channels_last"])
def test_memory_options_leave_outputs_and_gradients_unchanged(option):
    torch.manual_seed(0)
    plain = TorchvisionEncoder(patch_size=16, patch_stride=8).train()
    other = TorchvisionEncoder(patch_size=16, patch_stride=8, **{option: True}).train()
    other.load_state_dict(plain.state_dict())
    x = images(2)
    a, b = plain.forward_features(x), other.forward_features(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    for p, q in zip(plain.parameters(), other.parameters(), strict=True):  # float32 rounding
        assert (p.grad - q.grad).norm() <= 1e-3 * p.grad.norm()


@pytest.mark.slow
def test_cpc_fits_two_steps_with_a_torchvision_resnet(tmp_path):
    folder = write_image_folder(tmp_path / "images", size=40, mode="RGB")
    args = fit_args(
        folder,
        tmp_path / "run",
        "--data.channels=3",
        "--data.image_size=40",
        # given: jsonargparse keeps the default ResNetEncoder's values of options both share
        "--model.encoder.in_channels=3",
        "--model.encoder.patch_size=16",  # 40 px -> 4x4 grid of 16 px patches, stride 8
        "--model.encoder.patch_stride=8",
        "--trainer.max_steps=2",
        "--trainer.enable_checkpointing=false",  # 135 MB with AdamW's state: slow to write
        **QUICK,
        **{"model.encoder": "cpc.models.TorchvisionEncoder", "model.encoder.width": None},
    )
    cli = cli_main(args)
    assert cli.trainer.global_step == 2
    assert isinstance(cli.model.encoder, TorchvisionEncoder)
    assert cli.model.encoder.arch == "resnet18"
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_a_torchvision_encoder_has_the_whitened_compact_feature_too():
    torch.manual_seed(0)
    enc = TorchvisionEncoder(in_channels=1, patch_size=16, patch_stride=8, compact_dim=4)
    images = torch.rand(12, 1, 32, 32)  # 3x3 grid
    enc.eval()
    with torch.no_grad():
        enc.fit_compact(enc.pool(enc.forward_features(images)))
        out = enc(images)
    assert out.shape == (12, 4) == (12, enc.compact_features)
    torch.testing.assert_close(torch.cov(out.T), torch.eye(4), atol=1e-3, rtol=0)
