import pytest
import torch

from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.tasks.base import Task
from cpc.tasks.cpc import CPCTask


class CountingTask(Task):
    name = "counting"

    def __init__(self, num_features: int, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.head = torch.nn.Linear(num_features, 1)
        self.calls = 0

    def forward(self, encoder, images):
        self.calls += 1
        return {"loss": self.head(encoder(images)).pow(2).mean()}


def small(**kwargs):
    return CPCModule(encoder=ResNetEncoder(width=8), **kwargs)


def test_default_is_cpc_alone_and_logs_per_task_metrics():
    module = small()
    assert list(module.tasks) == ["cpc"]
    metrics = module.shared_step(torch.rand(2, 1, 28, 28), "train")
    assert set(metrics) == {
        "train/loss",
        "train/cpc/loss",
        "train/cpc/acc",
        "train/cpc/mi_bound_nats",
    }
    torch.testing.assert_close(metrics["train/loss"], metrics["train/cpc/loss"])


def test_total_is_the_weighted_sum_and_weight_zero_skips_compute():
    from functools import partial

    module = small(tasks=[partial(CPCTask, weight=0.5), partial(CountingTask, weight=2.0)])
    metrics = module.shared_step(torch.rand(2, 1, 28, 28), "train")
    expected = 0.5 * metrics["train/cpc/loss"] + 2.0 * metrics["train/counting/loss"]
    torch.testing.assert_close(metrics["train/loss"], expected)

    module = small(tasks=[CPCTask, partial(CountingTask, weight=0.0)])
    metrics = module.shared_step(torch.rand(2, 1, 28, 28), "train")
    assert module.tasks["counting"].calls == 0 and "train/counting/loss" not in metrics


def test_duplicate_tasks_and_all_zero_weights_are_clear_errors():
    from functools import partial

    with pytest.raises(ValueError, match="once"):
        small(tasks=[CPCTask, CPCTask])
    with pytest.raises(ValueError, match="positive weight"):
        small(tasks=[partial(CPCTask, weight=0.0)])
    with pytest.raises(ValueError, match="weight must be >= 0"):
        small(tasks=[partial(CPCTask, weight=-1.0)])


def test_non_finite_loss_names_the_step():
    module = small()
    module.shared_step = lambda images, stage: {"train/loss": torch.tensor(float("nan"))}
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        module.training_step((torch.rand(2, 1, 28, 28), None), 0)
