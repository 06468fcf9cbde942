"""LightningDataModules: in-memory uint8 images, a seeded train/val split, floats on the device.

Splits (the official test split is never used by ``train_dataloader``/``val_dataloader``):

- ``train_dataloader()``: pretraining images, shuffled, ``drop_last``: the train split minus the
  held-out val part (STL-10: its 100k ``unlabeled`` split plus that).
- ``val_dataloader()``: the held-out val part of the train split, a fixed split given ``seed``.
- ``test_dataloader()``: the official test split.
- ``eval_dataloader(split)``: labelled ``"train"`` / ``"val"`` / ``"test"``, unshuffled, for
  kNN and the linear probe.

Which images each split holds (loading, the seeded split, a label budget's subset) is
:class:`~cpc.data.splits.ImageSplits`, a base of :class:`ImageDataModule`.

The train order is a :class:`~cpc.data.sampler.ResumableRandomSampler` seeded by
``seed_everything`` (under DDP, each rank takes its share of that order); :meth:`state_dict`
(saved in every checkpoint) holds its seed, epoch and position, so a run resumed mid-epoch
sees exactly the images it had not yet trained on (with as many DDP ranks as before).

Batches stay uint8 through the DataLoader (4x less to copy) and become float32 in [0, 1] in
``on_after_batch_transfer``, on the device. Augmentation and patches belong to the model.
On one CUDA device the training images live on the GPU and batches are sliced there
(:class:`~cpc.data.device_loader.DeviceLoader`, ``device_data``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset

from cpc.data.device_loader import DeviceLoader
from cpc.data.sampler import ResumableRandomSampler
from cpc.data.splits import ImageSplits, Source, split_tensors

EvalSplit = Literal["train", "val", "test"]


class ImageDataModule(ImageSplits, L.LightningDataModule):
    """Base: subclasses say how to load a source split and what the images look like.

    Args:
        root: data folder (see ``data/README.md``).
        batch_size: images per batch, for every loader.
        val_size: images held out from the train split for validation.
        num_workers: DataLoader workers; None = 0 without CUDA (data is in memory), else
            ``min(8, cpu_count // 2)``.
        seed: seed of the train/val split (not of shuffling, which follows ``seed_everything``:
            ``torch.initial_seed()`` when the train loader is first made).
        device_data: keep the training images on the training device and slice batches there
            (:class:`~cpc.data.device_loader.DeviceLoader`: no workers, no host copies); None
            (default) does so on a single CUDA device.
        labels_per_class: ``cpc finetune`` only: train on this many labelled images of each
            class of the train split, a class-balanced subset drawn with ``label_seed``
            (:func:`cpc.data.subset.class_balanced_subset`); None: every labelled image.
        label_fraction: the same budget as a fraction of the smallest class (e.g. 0.01).
        label_seed: which subset of that budget (its draw).
    """

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 256,
        val_size: int = 5000,
        num_workers: int | None = None,
        seed: int = 0,
        device_data: bool | None = None,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_size < 0:
            raise ValueError(
                f"need batch_size >= 1 and val_size >= 0, got {batch_size}, {val_size}"
            )
        self.root = root
        self.batch_size = batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.seed = seed
        self.device_data = device_data
        self.labels_per_class, self.label_fraction = labels_per_class, label_fraction
        self.label_seed = label_seed
        self._sources: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._shuffle: dict[str, int] = {}  # a checkpoint's {"seed", "epoch", "start"} to resume

    @staticmethod
    def from_config(data: str | Mapping[str, Any]) -> ImageDataModule:
        """The data module a config's ``data:`` section names, read as ``cpc fit`` reads it: a
        class path (``"cpc.data.MNISTDataModule"``) or ``{"class_path": ..., "init_args":
        {...}}`` (e.g. the ``data`` of a run's ``config.yaml``)."""
        from jsonargparse import ArgumentParser

        parser = ArgumentParser()
        parser.add_subclass_arguments(ImageDataModule, "data")
        return parser.instantiate_classes(parser.parse_object({"data": data})).data

    # -- what the model needs before setup -------------------------------------------------
    @property
    def num_channels(self) -> int:
        raise NotImplementedError

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_eval_splits(self) -> bool:
        """Whether :meth:`eval_dataloader` gives the labelled splits (kNN, probes, the report)."""
        return True

    # -- Lightning hooks ----------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load into memory the sources ``stage`` needs (``fit``, ``validate``, ``test``, None)."""
        needed: list[Source] = []
        if stage in (None, "fit", "validate"):
            needed.append("train")
        if stage in (None, "fit"):
            needed += self.extra_pretrain_sources
        if stage in (None, "test", "predict"):
            needed.append("test")
        for source in needed:
            self._source(source)

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        """A train loader shuffles with a resumable sampler; no loader draws from the global
        random state (its own ``generator``), so the training's random draws are the same
        whether or not validation or a resume created loaders in between."""
        workers = self.num_workers
        if workers is None:
            workers = min(8, (os.cpu_count() or 2) // 2) if torch.cuda.is_available() else 0
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self._train_sampler(dataset, batch_size) if train else None,
            drop_last=train,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),  # seeds workers' base seed only
        )

    def train_dataloader(self) -> DataLoader:
        """Pretraining images; with a label budget (``cpc finetune``) the labelled subset,
        in batches of at most its size."""
        if self.few_labels:
            return self._train_loader(self.dataset("labelled"), finetune=True)
        return self._train_loader(self.dataset("pretrain"))

    def _train_loader(self, dataset: Dataset, finetune: bool = False) -> DataLoader:
        batch_size = min(self.batch_size, len(dataset)) if finetune else self.batch_size
        if len(dataset) < batch_size:
            raise ValueError(
                f"the train split has {len(dataset)} images, fewer than batch_size="
                f"{self.batch_size} (drop_last would leave no batch): lower batch_size"
            )
        if self._data_on_device(dataset):
            images, labels = split_tensors(dataset)
            device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
            return DeviceLoader(
                images,
                labels,
                batch_size,
                drop_last=True,
                sampler=self._train_sampler(dataset, batch_size),
                device=device,
            )
        return self._loader(dataset, batch_size, train=True)

    def _train_sampler(self, dataset: Dataset, batch_size: int) -> ResumableRandomSampler:
        """The train order: seeded by ``seed_everything``, or where a checkpoint left it."""
        seed = self._shuffle.get("seed", torch.initial_seed())
        trainer = self.trainer
        ranks = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = ResumableRandomSampler(len(dataset), seed, *ranks)
        sampler.epoch = self._shuffle.get("epoch", 0)
        sampler.start = self._shuffle.get("start", 0) * batch_size
        self._shuffle = {}
        return sampler

    def _data_on_device(self, dataset: Dataset) -> bool:
        """``device_data``, or by default: training on one CUDA device, the images taking at
        most a quarter of its memory."""
        if self.device_data is not None:
            return self.device_data
        trainer = self.trainer
        if trainer is None or trainer.world_size != 1:
            return False
        device = trainer.strategy.root_device
        if device.type != "cuda":
            return False
        image_bytes = len(dataset) * self.num_channels * self.image_size[0] * self.image_size[1]
        return image_bytes <= torch.cuda.get_device_properties(device).total_memory / 4

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the shuffled order: ``{"seed", "epoch", "start",
        "batch_size"}`` with ``start`` the batches of ``epoch`` already trained (Lightning's
        progress counters at the time of saving, not the loader's, which prefetches ahead)."""
        sampler = getattr(self.trainer.train_dataloader, "sampler", None) if self.trainer else None
        if not isinstance(sampler, ResumableRandomSampler):
            return {}
        loop = self.trainer.fit_loop
        epoch, start = loop.epoch_progress.current.processed, 0
        if epoch < loop.epoch_progress.current.started:  # inside epoch `epoch`
            start = loop.epoch_loop.batch_progress.current.processed
            if start >= self.trainer.num_training_batches:  # its last batch: the next epoch
                epoch, start = epoch + 1, 0
        return {"seed": sampler.seed, "epoch": epoch, "start": start, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume the shuffled order at a checkpoint's :meth:`state_dict` (Lightning calls this
        before it makes the train loader).

        Raises:
            ValueError: the checkpoint was trained with another ``batch_size``: its position
                and Lightning's progress counters count batches of that size, so another one
                would skip or repeat images (an exact resume needs the same batches).
        """
        saved = state_dict.get("batch_size", self.batch_size)  # older checkpoints: not saved
        if saved != self.batch_size:
            raise ValueError(
                f"the checkpoint was trained with data.batch_size {saved}, not {self.batch_size}: "
                f"resume with data.batch_size {saved} (its position in the data counts batches "
                "of that size), or train a new run without --ckpt_path"
            )
        self._shuffle = dict(state_dict)
        if state_dict:  # Lightning cannot see that the order resumes here: its warning is wrong
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), self.batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), self.batch_size, train=False)

    def eval_dataloader(self, split: EvalSplit, batch_size: int | None = None) -> DataLoader:
        """Labelled, unshuffled, every image (no ``drop_last``): for kNN and linear probes."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        return self._loader(self.dataset(split), batch_size or self.batch_size, train=False)

    def on_after_batch_transfer(
        self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, C, H, W)`` -> float32 in [0, 1], on the device; labels unchanged."""
        images, labels = batch
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images from the loader, got {images.dtype}")
        return images.float().div_(255), labels


class ShapeFromOptions:
    """``num_channels`` and ``image_size`` from a data module's own ``channels`` and
    ``image_size`` options (kept as ``_channels``, ``_image_size``): for sources whose images
    are not read before setup. Put it before :class:`ImageDataModule` in the bases."""

    _channels: int
    _image_size: int

    @property
    def num_channels(self) -> int:
        return self._channels

    @property
    def image_size(self) -> tuple[int, int]:
        return (self._image_size, self._image_size)
