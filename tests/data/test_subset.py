import pytest
import torch

from cpc.data.subset import class_balanced_subset, labels_for_budget

LABELS = torch.arange(10).repeat_interleave(30)[
    torch.randperm(300, generator=torch.Generator().manual_seed(1))
]


def test_subset_is_class_balanced_sorted_and_unique():
    subset = class_balanced_subset(LABELS, 7, seed=0)
    assert subset.shape == (70,)
    assert torch.equal(torch.bincount(LABELS[subset]), torch.full((10,), 7))
    assert torch.equal(subset, subset.unique())  # sorted, no repeats


def test_subset_is_seeded_and_budgets_nest():
    assert torch.equal(class_balanced_subset(LABELS, 5, 3), class_balanced_subset(LABELS, 5, 3))
    assert not torch.equal(class_balanced_subset(LABELS, 5, 0), class_balanced_subset(LABELS, 5, 1))
    small, large = (
        set(class_balanced_subset(LABELS, 3, 2).tolist()),
        class_balanced_subset(LABELS, 20, 2),
    )
    assert small <= set(large.tolist())


def test_unlabelled_images_are_never_drawn():
    labels = torch.tensor([-1, 0, 1, -1, 0, 1])
    assert class_balanced_subset(labels, 2).tolist() == [1, 2, 4, 5]


@pytest.mark.parametrize(
    ("labels", "per_class", "message"),
    [
        (LABELS, 31, "labels_per_class 31 is more than class 0 holds \\(30"),
        (LABELS, 0, "labels_per_class must be >= 1"),
        (torch.full((5,), -1), 1, "needs a labelled data module"),
    ],
)
def test_bad_budgets_are_one_line(labels, per_class, message):
    with pytest.raises(ValueError, match=message):
        class_balanced_subset(labels, per_class)


def test_a_fraction_is_labels_per_class_of_the_smallest_class():
    assert labels_for_budget(LABELS, None, 0.1) == 3
    assert labels_for_budget(LABELS, 4, None) == 4
    with pytest.raises(ValueError, match="not both"):
        labels_for_budget(LABELS, 4, 0.5)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        labels_for_budget(LABELS, None, 1.5)
