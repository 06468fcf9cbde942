"""Which images each split of a data module holds: loading, the train/val split, the labels.

:class:`ImageSplits` is the plain-torch half of :class:`~cpc.data.datamodule.ImageDataModule`
(no Lightning): each source split is loaded once and kept in memory, the labelled train
source is split into train and val by a fixed seed, a label budget picks a class-balanced
subset of train, and every split is a :class:`~cpc.data.datasets.TensorImageDataset` view
(or a ``ConcatDataset`` of them) that names its source and indices, so tests can check that
splits are disjoint. The loaders and Lightning hooks stay in the data module.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import ConcatDataset, Dataset

from cpc.data.datasets import TensorImageDataset
from cpc.data.subset import class_balanced_subset, labels_for_budget

Source = Literal["train", "test", "unlabeled"]


class ImageSplits:
    """The splits of :class:`~cpc.data.datamodule.ImageDataModule`, which sets the options
    below in its ``__init__`` (see its Args); subclasses implement :meth:`load_source`."""

    #: sources loaded for pretraining besides the labelled train split
    extra_pretrain_sources: tuple[Source, ...] = ()

    val_size: int
    seed: int
    labels_per_class: int | None
    label_fraction: float | None
    label_seed: int
    _sources: dict[str, tuple[torch.Tensor, torch.Tensor]]  # source -> (images, labels)

    def load_source(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        """Load one source split: ``(images (N, C, H, W) uint8, labels (N,) int64)``."""
        raise NotImplementedError

    def _source(self, source: Source) -> tuple[torch.Tensor, torch.Tensor]:
        if source not in self._sources:
            self._sources[source] = self.load_source(source)
        return self._sources[source]

    def _num_val(self, n: int) -> int:
        if self.val_size >= n:
            raise ValueError(f"val_size={self.val_size} leaves no training images (train has {n})")
        return self.val_size

    def _train_val_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeded fixed split of the labelled train source: ``(train_idx, val_idx)``, sorted."""
        n = len(self._source("train")[0])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        k = self._num_val(n)
        return perm[k:].sort().values, perm[:k].sort().values

    @property
    def few_labels(self) -> bool:
        """Whether a label budget (``labels_per_class`` or ``label_fraction``) is set."""
        return self.labels_per_class is not None or self.label_fraction is not None

    def labelled_indices(self) -> torch.Tensor:
        """Source indices (into the ``"train"`` source) of the labelled training images: the
        class-balanced subset of the budget, or the whole ``train`` split without one."""
        train_idx, _ = self._train_val_indices()
        if not self.few_labels:
            return train_idx
        labels = self._source("train")[1][train_idx]  # (N_train,)
        per_class = labels_for_budget(labels, self.labels_per_class, self.label_fraction)
        return train_idx[class_balanced_subset(labels, per_class, self.label_seed)]

    def label_record(self) -> dict[str, Any]:
        """What the run folder's ``labelled_subset.json`` holds: the budget and the indices."""
        indices = self.labelled_indices()
        return {
            "labels_per_class": self.labels_per_class,
            "label_fraction": self.label_fraction,
            "label_seed": self.label_seed,
            "source": "train",
            "count": len(indices),
            "indices": indices.tolist(),
        }

    def dataset(self, split: Literal["pretrain", "labelled", "train", "val", "test"]) -> Dataset:
        """The dataset of a split, loading its source on first use.

        ``pretrain`` is ``train`` plus ``extra_pretrain_sources`` (STL-10's unlabeled split).
        ``labelled`` is what ``cpc finetune`` trains on (:meth:`labelled_indices`).
        Each part is a :class:`TensorImageDataset` whose ``source`` and ``indices`` say which
        images it holds (see :meth:`split_indices`).
        """
        if split == "test":
            return TensorImageDataset(*self._source("test"), source="test")
        if split == "labelled":
            indices = self.labelled_indices()
            return TensorImageDataset(*self._source("train"), indices=indices, source="train")
        if split not in ("pretrain", "train", "val"):
            raise ValueError(f"split must be pretrain, train, val or test, got {split!r}")
        train_idx, val_idx = self._train_val_indices()
        idx = val_idx if split == "val" else train_idx
        labelled = TensorImageDataset(*self._source("train"), indices=idx, source="train")
        if split != "pretrain" or not self.extra_pretrain_sources:
            return labelled
        extra = [
            TensorImageDataset(*self._source(s), source=s) for s in self.extra_pretrain_sources
        ]
        return ConcatDataset([*extra, labelled])

    def split_indices(
        self, split: Literal["pretrain", "train", "val", "test"]
    ) -> dict[str, torch.Tensor]:
        """Which source images a split holds, ``{source: indices}``: a guard for tests."""
        ds = self.dataset(split)
        parts = ds.datasets if isinstance(ds, ConcatDataset) else [ds]
        return {p.source: p.indices for p in parts}


def split_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ``(N, C, H, W)`` uint8 and labels ``(N,)`` of a split (a
    :class:`TensorImageDataset` view or a ``ConcatDataset`` of them), gathered in order."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    images = torch.cat([p.images[p.indices] for p in parts])  # type: ignore[attr-defined]
    labels = torch.cat([p.labels[p.indices] for p in parts])  # type: ignore[attr-defined]
    return images, labels
