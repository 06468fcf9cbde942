import os
import random

import numpy as np
import pytest
import torch

import cpc.eval.linear_probe as probe_module
from cpc.eval.linear_probe import LinearHeads, linear_probe

NUM_CLASSES, DIM = 4, 16
FAST = dict(epochs=5, batch_size=128)


def clusters(n: int, spread: float, generator: torch.Generator):
    """Gaussian clusters around fixed class means, on a large offset and mixed scales."""
    means = torch.eye(NUM_CLASSES, DIM) * 10
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    noise = torch.randn(n, DIM, generator=generator) * spread
    return (means[labels] + noise) * torch.logspace(-1, 1, DIM) + 50, labels


def splits(spread: float, shuffle_labels: bool = False):
    generator = torch.Generator().manual_seed(0)
    data = [clusters(n, spread, generator) for n in (800, 400, 1000)]
    if shuffle_labels:  # labels independent of the features
        data = [(x, torch.randint(0, NUM_CLASSES, (len(x),), generator=generator)) for x, _ in data]
    return [tensor for split in data for tensor in split]


def test_separable_clusters_are_classified_perfectly():
    result = linear_probe(*splits(spread=1.0), NUM_CLASSES, **FAST)
    assert result["top1"] == 1.0
    assert result["top5"] == 1.0


def test_the_callers_random_state_is_left_alone_and_the_seed_decides(monkeypatch):
    """The probe seeds its own draws and sets the global generators back: the caller's next
    torch, numpy and Python numbers are those it would have drawn without the probe, and no
    PL_GLOBAL_SEED is left behind; the same seed gives the same probe whatever came before."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    data, small = splits(spread=4.0), {**FAST, "epochs": 1}
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (the global generator is what is checked)
    random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    first = linear_probe(*data, NUM_CLASSES, **small)
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())  # noqa: NPY002
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert before[2] == after[2] and "PL_GLOBAL_SEED" not in os.environ
    torch.rand(5)  # another global state: the probe does not depend on it
    assert linear_probe(*data, NUM_CLASSES, **small) == first


def test_random_labels_give_chance_accuracy():
    result = linear_probe(*splits(spread=1.0, shuffle_labels=True), NUM_CLASSES, **FAST)
    assert result["top1"] < 1 / NUM_CLASSES + 0.1


def test_selects_best_val_weight_decay_and_tests_only_it(monkeypatch):
    events = []
    scored = probe_module.accuracy

    def record(probe, head, features, labels, num_classes):
        events.append((len(features), head))
        return scored(probe, head, features, labels, num_classes)

    monkeypatch.setattr(probe_module, "accuracy", record)
    weight_decays = (0.0, 0.3, 1e-3)
    result = linear_probe(*splits(spread=4.0), NUM_CLASSES, weight_decays, **FAST)

    assert list(result["sweep"]) == list(weight_decays)
    assert result["val_top1"] == max(result["sweep"].values())
    assert result["sweep"][result["weight_decay"]] == result["val_top1"]
    # Every head is scored on val (400 rows) first; then test (1000 rows), once, the selected.
    selected = weight_decays.index(result["weight_decay"])
    assert events == [(400, 0), (400, 1), (400, 2), (1000, selected)]


def test_min_steps_trains_longer_on_few_examples():
    """10 examples in one batch: 5 epochs are 5 steps, too few to fit; min_steps fits them."""
    x_train, y_train, *rest = splits(spread=1.0)
    few = (x_train[:40], y_train[:40], *rest)
    short = linear_probe(*few, NUM_CLASSES, (0.0,), epochs=1, batch_size=1024, lr=0.01)
    long = linear_probe(
        *few, NUM_CLASSES, (0.0,), epochs=1, batch_size=1024, lr=0.01, min_steps=300
    )
    assert long["top1"] > short["top1"] + 0.2 and long["top1"] > 0.95


def test_standardize_with_uses_the_given_statistics(monkeypatch):
    """The statistics come from standardize_with (e.g. all unlabelled images), not the split."""
    seen = []
    monkeypatch.setattr(
        probe_module,
        "standardization",
        lambda f, eps=1e-6: seen.append(len(f)) or (f.float().mean(0), f.float().std(0)),
    )
    data = splits(spread=1.0)
    linear_probe(*data, NUM_CLASSES, **FAST)
    linear_probe(*data, NUM_CLASSES, **FAST, standardize_with=torch.cat([data[0], data[0]]))
    assert seen == [800, 1600]


def test_heads_trained_together_end_as_if_each_was_trained_alone():
    """One head per weight decay in one run gives bit for bit the sweep of separate runs."""
    data = splits(spread=4.0)
    weight_decays = (0.0, 0.3, 0.03)
    together = linear_probe(*data, NUM_CLASSES, weight_decays, **FAST)
    alone = {wd: linear_probe(*data, NUM_CLASSES, (wd,), **FAST) for wd in weight_decays}
    assert len(set(together["sweep"].values())) > 1  # the penalties make a difference here
    assert together["sweep"] == {wd: alone[wd]["val_top1"] for wd in weight_decays}
    best = alone[together["weight_decay"]]
    assert (together["top1"], together["top5"]) == (best["top1"], best["top5"])


def test_fit_standardization_centres_and_scales():
    features = torch.randn(500, 3) * torch.tensor([0.1, 10.0, 1.0]) + 5
    features[:, 2] = 7.0  # constant feature keeps scale 1
    probe = LinearHeads(3, 2)
    probe.fit_standardization(features)
    standardised = (features - probe.mean) / probe.std
    torch.testing.assert_close(standardised.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(standardised[:, :2].std(0), torch.ones(2))
    assert probe.std[2] == 1.0


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (2, torch.randn(400, DIM + 1), "val_features must have shape"),
        (5, torch.full((1000,), NUM_CLASSES), "test_labels must be integers in"),
        (1, torch.zeros(799, dtype=torch.long), "train_labels must have shape"),
        (0, torch.full((800, DIM), float("nan")), "train_features contains NaN"),
    ],
)
def test_bad_splits_raise_value_error(index, bad, message):
    args = splits(spread=1.0)
    args[index] = bad
    with pytest.raises(ValueError, match=message):
        linear_probe(*args, NUM_CLASSES, **FAST)


def test_empty_weight_decays_raise_value_error():
    with pytest.raises(ValueError, match="weight_decays"):
        linear_probe(*splits(spread=1.0), NUM_CLASSES, weight_decays=(), **FAST)
    with pytest.raises(ValueError, match="weight_decays"):
        LinearHeads(DIM, NUM_CLASSES, num_heads=0)


def test_test_features_reach_neither_training_nor_selection():
    """Only the test accuracies may depend on the test features: moving them far away (which
    would move any statistic fitted on them, e.g. a standardisation fitted on train + test)
    leaves the probes' validation accuracies and the selected weight decay bit-equal."""
    data, small = splits(spread=4.0), {**FAST, "epochs": 2}
    first = linear_probe(*data, NUM_CLASSES, **small)
    data[4] = data[4] * 30 - 500  # the test features, same labels
    moved = linear_probe(*data, NUM_CLASSES, **small)
    assert moved["sweep"] == first["sweep"] and moved["weight_decay"] == first["weight_decay"]
    assert moved["val_top1"] == first["val_top1"] > 0.5  # a probe that learnt something
    assert moved["top1"] != first["top1"]  # the test features are what the test scores
