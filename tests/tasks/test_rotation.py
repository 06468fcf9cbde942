import json
import math
from pathlib import Path

import pytest
import torch
from helpers import quick_fit_args
from torch import nn

from cpc.cli import cli_main
from cpc.models.encoder import ResNetEncoder
from cpc.tasks import RotationTask
from cpc.tasks.rotation import all_rotations, rotate

CONFIGS = Path(__file__).parents[2] / "configs" / "tasks"
FASHION_MNIST = CONFIGS.parent / "fashion_mnist.yaml"


class PooledMean(nn.Module):
    """Stand-in encoder: a 1x1 grid of D copies of each image's mean pixel,
    ``(B, C, H, W) -> (B, D, 1, 1)``."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, images):
        mean = images.mean(dim=(1, 2, 3))[:, None, None, None]  # (B, 1, 1, 1)
        return self.scale * mean.expand(-1, self.num_features, 1, 1)


def test_rotate_back_by_minus_k_gives_each_original_in_its_place():
    torch.manual_seed(0)
    images = torch.rand(12, 2, 5, 5)
    k = torch.randint(4, (12,))
    out = rotate(images, k)
    for i in range(12):  # slow reference: one image at a time
        assert out[i].equal(torch.rot90(images[i], int(k[i]), dims=(1, 2)))
        assert torch.rot90(out[i], -int(k[i]), dims=(1, 2)).equal(images[i])


def test_rotation_is_counter_clockwise_quarter_turns():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    turned = rotate(image.expand(4, -1, -1, -1), torch.arange(4))
    assert turned[1, 0].tolist() == [[2, 4], [1, 3]]  # 90 degrees: top row becomes left column
    assert turned[2, 0].tolist() == [[4, 3], [2, 1]]  # 180 degrees
    assert turned[0].equal(image[0])


@pytest.mark.parametrize("training", [True, False])
def test_task_examples_have_labels_of_the_rotation_applied(training):
    torch.manual_seed(0)
    task = RotationTask(8, augment=nn.Identity()).train(training)
    images = torch.rand(10, 1, 6, 6)
    rotated, labels = task.make_examples(images)
    assert rotated.shape == images.shape and labels.shape == (10,)
    for i in range(10):
        assert torch.rot90(rotated[i], -int(labels[i]), dims=(1, 2)).equal(images[i])
    if not training:  # fixed rotations so the validation metric is comparable across epochs
        assert labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_all_rotations_gives_4b_examples_in_blocks_of_one_rotation():
    images = torch.rand(3, 1, 4, 4)
    rotated, labels = RotationTask(8, all_rotations=True).eval().make_examples(images)
    assert rotated.shape == (12, 1, 4, 4)
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for k in range(4):
        block = rotated[3 * k : 3 * (k + 1)]
        assert torch.rot90(block, -k, dims=(2, 3)).equal(images)
    assert all_rotations(images)[0].equal(rotated)


@pytest.mark.parametrize(("hidden", "num_features"), [(5, 8), (0, 16)])
def test_head_input_follows_num_features_and_outputs_loss_and_acc(hidden, num_features):
    task = RotationTask(num_features, hidden=hidden)
    assert task.head[0].in_features == num_features
    assert task.head[-1].out_features == 4
    out = task(PooledMean(num_features), torch.rand(6, 1, 8, 8))
    assert set(out) == {"loss", "acc"} and out["loss"].ndim == 0
    assert torch.isfinite(out["loss"]) and 0 <= out["acc"] <= 1


def test_head_sees_the_grid_mean_whatever_the_compact_feature():
    # a compact feature that is pooled to 2x2 cells and whitened (unfitted during training)
    encoder = ResNetEncoder(width=4, stages=(1, 1), pool_size=2, compact_dim=8).eval()
    task = RotationTask(encoder.num_features, hidden=0).eval()
    seen = []
    task.head.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    images = torch.rand(4, 1, 28, 28)
    task(encoder, images)
    rotated, _ = task.make_examples(images)  # eval: the same rotations again
    expected = encoder.forward_features(rotated).mean(dim=(2, 3))  # (4, D, 7, 7) -> (4, D)
    assert seen[0].shape == (4, encoder.num_features)  # D, not the compact feature's 8
    torch.testing.assert_close(seen[0], expected)
    out = task.train()(encoder.train(), images)  # trains under the unfitted projection
    out["loss"].backward()
    assert encoder.stem[0].weight.grad.abs().sum() > 0


def test_uniform_logits_give_log_4_and_argmax_0_accuracy():
    task = RotationTask(4, hidden=0).eval()
    nn.init.zeros_(task.head[-1].weight)
    nn.init.zeros_(task.head[-1].bias)
    out = task(PooledMean(4), torch.rand(8, 1, 6, 6))
    torch.testing.assert_close(out["loss"], torch.tensor(math.log(4)))
    assert out["acc"] == 0.25  # ties -> class 0, the label of 2 images in 8


def test_non_square_images_are_one_clear_error():
    with pytest.raises(ValueError, match=r"square images.*\(2, 1, 28, 20\)"):
        RotationTask(4)(PooledMean(4), torch.rand(2, 1, 28, 20))


def test_bad_hidden_fails_at_construction():
    with pytest.raises(ValueError, match="hidden"):
        RotationTask(4, hidden=-1)


def fit_args(folder: Path, out: Path, config: str, *extra: str) -> list[str]:
    """A task fragment over configs/fashion_mnist.yaml, on the tiny image folder: 2 train
    steps, 1 val batch."""
    return quick_fit_args(folder, out, *extra, config=[FASHION_MNIST, CONFIGS / config])


@pytest.mark.slow
def test_cpc_and_rotation_log_both_losses_and_their_weighted_sum(tiny_folder, tmp_path):
    tasks = [
        {"class_path": "cpc.tasks.CPCTask"},
        {"class_path": "cpc.tasks.RotationTask", "init_args": {"weight": 0.5}},
    ]
    tasks_arg = f"--model.tasks={json.dumps(tasks)}"
    cli = cli_main(fit_args(tiny_folder, tmp_path, "rotation.yaml", tasks_arg))
    logged = cli.trainer.callback_metrics
    for key in ("train/cpc/loss", "train/rotation/loss", "train/rotation/acc", "val/rotation/acc"):
        assert torch.isfinite(logged[key]), key
    torch.testing.assert_close(
        logged["train/loss"], logged["train/cpc/loss"] + 0.5 * logged["train/rotation/loss"]
    )
    assert list(cli.model.tasks) == ["cpc", "rotation"]


@pytest.mark.slow
def test_rotation_config_alone_and_weight_0_skips_a_task(tiny_folder, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("a task with weight 0 ran")

    monkeypatch.setattr("cpc.tasks.CPCTask.forward", never)
    tasks = [
        {"class_path": "cpc.tasks.RotationTask"},
        {"class_path": "cpc.tasks.CPCTask", "init_args": {"weight": 0.0}},
    ]
    cli = cli_main(
        fit_args(tiny_folder, tmp_path, "rotation.yaml", f"--model.tasks={json.dumps(tasks)}")
    )
    logged = cli.trainer.callback_metrics
    assert torch.isfinite(logged["train/rotation/loss"])
    assert not any(key.startswith(("train/cpc/", "val/cpc/")) for key in logged)
