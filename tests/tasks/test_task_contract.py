"""The contract every pretext task keeps (cpc.tasks.base.Task), tested once for all of them.

Each task, with each CPC context network: returns a finite scalar ``loss`` and an ``acc`` in
[0, 1]; starts at chance (a zeroed last layer gives log(number of choices)); sends gradients to
the encoder; augments only in training; and gives the same loss on every evaluation call.
"""

import math
from functools import partial

import pytest
import torch
from torch import nn

from cpc.models.context import GRUContext, TransformerContext
from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.tasks import CPCTask, JigsawTask, PatchPositionTask, RotationTask

B = 4  # images per batch


def cpc_chance_loss(task: CPCTask) -> float:
    """CPC's loss at chance: the mean over steps k of log(keys scored), B * (6 - k) * 6 keys."""
    return sum(math.log(B * (6 - k) * 6) for k in task.steps) / len(task.steps)


#: task factory, how many choices it has at chance, and its last layers (zeroed for chance)
TASKS = {
    "cpc_masked_conv": (CPCTask, None, lambda t: t.predictors.modules()),
    "cpc_gru": (
        partial(CPCTask, context=GRUContext, steps=(2,)),
        None,
        lambda t: t.predictors.modules(),
    ),
    "cpc_transformer": (
        partial(CPCTask, context=TransformerContext, steps=(2,), directions=("down", "left")),
        None,
        lambda t: t.predictors.modules(),
    ),
    "rotation": (RotationTask, 4, lambda t: [t.head[-1]]),
    "patch_position": (PatchPositionTask, 8, lambda t: [t.head[-1]]),
    "jigsaw": (partial(JigsawTask, num_permutations=10), 10, lambda t: [t.head[-1]]),
}


class Spy(nn.Module):
    """An augmentation that records its calls and changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def build(name: str, **kwargs):
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=8)
    make, choices, last_layers = TASKS[name]
    return encoder, make(encoder.num_features, **kwargs), choices, last_layers


@pytest.mark.parametrize("name", TASKS)
def test_outputs_are_a_finite_scalar_loss_and_an_accuracy(name):
    encoder, task, _, _ = build(name)
    out = task(encoder, torch.rand(B, 1, 28, 28))
    assert {"loss", "acc"} <= set(out)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert 0 <= out["acc"].item() <= 1


@pytest.mark.parametrize("name", TASKS)
def test_zeroed_last_layer_gives_chance_loss(name):
    encoder, task, choices, last_layers = build(name)
    for layer in last_layers(task):
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    images = torch.rand(B, 1, 28, 28) * 0.8 + 0.1  # no constant patch: every CPC key counts
    chance = math.log(choices) if choices else cpc_chance_loss(task)
    loss = task.eval()(encoder, images)["loss"]
    torch.testing.assert_close(loss, torch.tensor(chance))


@pytest.mark.parametrize("name", TASKS)
def test_gradients_reach_the_encoder(name):
    encoder, task, _, _ = build(name)
    task(encoder, torch.rand(B, 1, 28, 28))["loss"].backward()
    assert encoder.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TASKS)
def test_augmentation_runs_in_training_only(name):
    spy = Spy()
    encoder, task, _, _ = build(name, augment=spy)
    task.eval()(encoder, torch.rand(B, 1, 28, 28))
    assert spy.calls == 0
    task.train()(encoder, torch.rand(B, 1, 28, 28))
    assert spy.calls == 1


@pytest.mark.parametrize("name", TASKS)
def test_evaluation_is_deterministic(name):
    encoder, task, _, _ = build(name)
    images = torch.rand(B, 1, 28, 28)
    task.eval()
    torch.testing.assert_close(task(encoder, images)["loss"], task(encoder, images)["loss"])


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (partial(PatchPositionTask, gap=1), r"PatchPositionTask gap=1 .* overlap .* gap >= 2"),
        (partial(JigsawTask, spacing=1), r"JigsawTask spacing=1 .* overlap .* spacing >= 2"),
        (partial(CPCTask, steps=(1, 2)), r"CPC steps \[1\] .* overlap"),
    ],
)
def test_overlapping_patches_are_refused_when_the_module_is_built(task, message):
    """Task.check_encoder runs in CPCModule's constructor: no batch, no training step."""
    with pytest.raises(ValueError, match=message):
        CPCModule(ResNetEncoder(width=4), tasks=[task])
