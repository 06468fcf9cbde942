"""Streaming: pretrain on image collections larger than memory, read as litdata chunks.

``python -m cpc.data.prepare stream --src FOLDER --out DIR`` (:mod:`cpc.data.stream_prepare`)
writes the images once as litdata chunks; :class:`StreamingDataModule` reads them from that
local folder or from object storage (``s3://bucket/DIR``) with litdata's ``StreamingDataset``:
shuffled, split into disjoint shards per DDP rank and node, decoded and resized in the loader
workers, a few chunks in memory at a time. Batches are the uint8 ``(B, C, H, W)`` of every data
module and take the same device-side path (:meth:`ImageDataModule.on_after_batch_transfer`).

Labels for kNN, the linear probe and the report come from a separate, small labelled data
module (``labelled``, e.g. an :class:`~cpc.data.ImageFolderDataModule`): validation, the online
kNN, ``cpc eval`` and the end-of-fit report read it; pretraining reads only the stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2.functional as F
from litdata import StreamingDataLoader, StreamingDataset
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_image

from cpc.data.datamodule import EvalSplit, ImageDataModule, ShapeFromOptions
from cpc.data.datasets import DatasetNotFoundError


class DecodeImage:
    """A stored sample -> ``(image (C, S, S) uint8, label)``, in a loader worker.

    ``image`` is encoded bytes (JPEG/PNG, decoded with ``torchvision.io``) or a uint8 tensor
    ``(C, H, W)`` (stored raw); it is converted to ``channels``, its shorter side resized to
    ``size`` and center-cropped square (skipped when it is ``size x size`` already).
    """

    def __init__(self, size: int, channels: int) -> None:
        self.size = size
        self.channels = channels

    def __call__(self, sample: dict[str, Any]) -> tuple[torch.Tensor, int]:
        image = sample["image"]
        if isinstance(image, torch.Tensor):  # stored raw, (C, H, W) uint8
            image = self._convert(image)
        else:  # encoded bytes (a memoryview into the chunk)
            data = torch.frombuffer(bytearray(image), dtype=torch.uint8)
            mode = ImageReadMode.RGB if self.channels == 3 else ImageReadMode.GRAY
            image = F.to_dtype(decode_image(data, mode=mode), torch.uint8, scale=True)
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = F.resize(image, self.size, antialias=True)  # shorter side -> S
            image = F.center_crop(image, [self.size, self.size])  # (C, S, S)
        return image, int(sample["label"])

    def _convert(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == self.channels:
            return image
        if image.shape[0] == 3:  # RGB -> gray
            return F.rgb_to_grayscale(image)
        return image.expand(self.channels, -1, -1).contiguous()  # gray -> RGB


class ResumableStreamingDataLoader(StreamingDataLoader):
    """litdata's loader whose resumed epoch ends when its last batch is handed out.

    After ``load_state_dict`` litdata replays the saved position on every ``__iter__`` until
    one runs to exhaustion; Lightning stops at the epoch's length without exhausting it, so the
    next epoch would replay the finished one (an empty epoch). Here the resumed epoch counts as
    done once its last batch is yielded.
    """

    def __iter__(self) -> Iterator[Any]:
        epoch_samples = len(self) * self.batch_size  # this rank's, drop_last
        for batch in super().__iter__():
            if self._num_samples_yielded_streaming >= epoch_samples:
                self.restore = False  # the epoch is complete: the next __iter__ starts a new one
            yield batch

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """As litdata's, but a second call with the same state is a no-op: Lightning's fit loop
        may restore the state the data module restored already (it advances worker counters)."""
        if obj == getattr(self, "_restored", None):
            return
        super().load_state_dict(obj)
        self._restored = obj


class StreamingDataModule(ShapeFromOptions, ImageDataModule):
    """Pretrain on litdata chunks streamed from a folder or object storage (bounded memory).

    Prepare the chunks once (``python -m cpc.data.prepare stream --src FOLDER --out DIR``, see
    ``data/README.md``); each epoch then reads every image once, shuffled (litdata shuffles the
    chunk order and the images within chunks, with ``seed`` and the epoch), each DDP rank and
    node a disjoint shard of equal length. Memory holds a few chunks per worker, not the data.

    The train loader's position is part of every checkpoint (:meth:`state_dict`): a run resumed
    from a mid-epoch checkpoint continues with the next unseen batch.

    Args:
        input_dir: the prepared folder (``index.json`` + chunks), or its URL (``s3://...``; the
            chunks are cached in ``cache_dir``).
        image_size: side S of the training images: the shorter side is resized to S, then
            center-cropped (augmentation happens later, on the device).
        channels: 3 (RGB) or 1 (grayscale), whatever the stored images are.
        labelled: a small labelled data module (class sub-folders) for validation, the online
            kNN, the report and ``cpc eval``, with the same ``image_size`` and channels; None:
            no validation (switch off ``report`` and ``online_knn``).
        batch_size: images per training batch on each rank (64: a 64-px step near 3.5 GB, as
            :class:`cpc.data.ImageFolderDataModule`'s).
        num_workers: loader workers that read and decode; None = ``min(8, cpu_count // 2)``
            (at least 1, so decoding overlaps the training step).
        seed: shuffling seed (the same on every rank: the shards follow from it).
        cache_dir: where chunks from a URL are cached (None: litdata's default).
        max_cache_size: cache budget, e.g. ``"50GB"`` (None: litdata's default).
    """

    def __init__(
        self,
        input_dir: str = "data/stream",
        image_size: int = 64,
        channels: int = 3,
        labelled: ImageDataModule | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
    ) -> None:
        if channels not in (1, 3) or image_size < 1:
            raise ValueError(
                f"need channels 1 or 3 and image_size >= 1, got {channels}, {image_size}"
            )
        val_size = labelled.val_size if labelled is not None else 0
        super().__init__(input_dir, batch_size, val_size, num_workers, seed)
        if labelled is not None and (
            labelled.image_size != (image_size, image_size) or labelled.num_channels != channels
        ):
            raise ValueError(
                f"the labelled set has {labelled.num_channels}x{labelled.image_size} images, the "
                f"stream {channels}x{(image_size, image_size)}: give data.labelled the same "
                "image_size and channels"
            )
        self.input_dir = input_dir
        self._image_size = image_size
        self._channels = channels
        self.labelled = labelled
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self._resume_state: dict[str, Any] | None = None

    @property
    def class_names(self) -> list[str]:
        return self._need_labelled("class names").class_names

    @property
    def has_eval_splits(self) -> bool:
        """Only with ``labelled``: the stream has no labels."""
        return self.labelled is not None

    def _need_labelled(self, what: str) -> ImageDataModule:
        if self.labelled is None:
            raise ValueError(
                f"{what} need labelled images: set data.labelled (e.g. an ImageFolderDataModule "
                "with class sub-folders), or report.enabled false and online_knn.every_n_epochs 0"
            )
        return self.labelled

    # -- Lightning hooks ----------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.labelled is not None:
            self.labelled.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Check the stream exists (a local folder needs its ``index.json``); set up the
        labelled set. Nothing is loaded into memory."""
        if "://" not in self.input_dir and not (Path(self.input_dir) / "index.json").is_file():
            raise DatasetNotFoundError(
                f"no prepared stream in {self.input_dir} (index.json missing): run "
                f"`python -m cpc.data.prepare stream --src YOUR_IMAGES --out {self.input_dir}`"
            )
        if self.labelled is not None:  # its val and eval splits only, never a pretrain split
            self.labelled.setup("validate" if stage in (None, "fit") else stage)

    def train_dataloader(self) -> ResumableStreamingDataLoader:
        """Shuffled, sharded per rank by litdata, full batches only; resumed if a checkpoint
        said where the last run stopped (once: a later call starts at the beginning)."""
        dataset = StreamingDataset(
            self.input_dir,
            shuffle=True,
            drop_last=True,
            seed=self.seed,
            transform=DecodeImage(self._image_size, self._channels),
            cache_dir=self.cache_dir,
            max_cache_size=self.max_cache_size,
        )
        loader = ResumableStreamingDataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.loader_workers(),
            drop_last=True,
            pin_memory=torch.cuda.is_available(),
        )
        if self._resume_state is not None:
            loader.load_state_dict(self._resume_state)
            self._resume_state = None
        return loader

    def loader_workers(self) -> int:
        """``num_workers``, or by default ``min(8, cpu_count // 2)`` and at least 1."""
        if self.num_workers is not None:
            return self.num_workers
        return min(8, max(1, (os.cpu_count() or 2) // 2))

    def val_dataloader(self) -> DataLoader | list:
        """The labelled set's val split; no labelled set: no validation."""
        return self.labelled.val_dataloader() if self.labelled is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._need_labelled("tests").test_dataloader()

    def eval_dataloader(self, split: EvalSplit, batch_size: int | None = None) -> DataLoader:
        """The labelled set's split (kNN, linear probe, report, ``cpc eval``)."""
        return self._need_labelled("kNN and probe splits").eval_dataloader(split, batch_size)

    def dataset(self, split):
        raise NotImplementedError("a stream has no in-memory splits; see eval_dataloader")

    def state_dict(self) -> dict[str, Any]:
        """The position of the loader the trainer trains on, saved by Lightning in every
        checkpoint."""
        loader = self.trainer.train_dataloader if self.trainer else None
        if not isinstance(loader, StreamingDataLoader):
            return {}
        return {"train_loader": loader.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called before the loaders are built: the next ``train_dataloader`` resumes there."""
        self._resume_state = state_dict.get("train_loader")
