"""Datamodules on small generated stand-ins written in torchvision's own file formats."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from urllib.error import URLError

import lightning.pytorch as L
import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image
from stand_ins import N_TEST, N_TRAIN, make_cifar10, make_mnist, make_stl10, mnist_arrays, write_idx

from cpc.data import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    STL10DataModule,
    TensorImageDataset,
)
from cpc.data import prepare as prepare_mod


# -- generated image folders ---------------------------------------------------------------
def make_image_folder(root: Path, per_class: int = 6, sizes=((20, 30), (40, 24))) -> None:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image: ignored, not counted")


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    make_mnist(tmp_path)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Downloads fail as offline, and no Debian copy is installed."""

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    for module in (tvd.mnist, tvd.cifar, tvd.stl10):
        monkeypatch.setattr(module, "download_and_extract_archive", offline)
    monkeypatch.setattr(FashionMNISTDataModule, "debian_dir", tmp_path / "no-debian")


# -- properties, batches, float conversion --------------------------------------------------
@pytest.mark.parametrize(
    ("dm", "channels", "size"),
    [
        (FashionMNISTDataModule(root="nowhere"), 1, (28, 28)),
        (MNISTDataModule(root="nowhere"), 1, (28, 28)),
        (CIFAR10DataModule(root="nowhere"), 3, (32, 32)),
        (STL10DataModule(root="nowhere"), 3, (96, 96)),
    ],
)
def test_properties_before_setup(dm, channels, size):
    assert (dm.num_channels, dm.image_size, dm.num_classes) == (channels, size, 10)
    assert len(dm.class_names) == 10


def test_image_folder_properties_before_setup(tmp_path, monkeypatch):
    make_image_folder(tmp_path)
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded before setup"))
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, channels=1)
    assert (dm.num_channels, dm.image_size) == (1, (16, 16))
    assert (dm.class_names, dm.num_classes) == (["cat", "dog"], 2)


def test_batches_shapes_dtypes_and_float_range(fashion_root):
    dm = FashionMNISTDataModule(root=str(fashion_root), batch_size=64, val_size=50)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == (N_TRAIN - 50) // 64  # drop_last
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (64,) and labels.dtype == torch.int64
    floats, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert floats.dtype == torch.float32 and same_labels is labels
    assert floats.min() == 0.0 and floats.max() == 1.0
    torch.testing.assert_close(floats * 255, images.float())


def test_getitems_matches_getitem():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.arange(10), indices=torch.tensor([7, 2, 5]))
    batch = torch.utils.data.default_collate(ds.__getitems__([2, 0]))
    torch.testing.assert_close(batch[0], images[[5, 7]])
    torch.testing.assert_close(batch[1], torch.tensor([5, 7]))
    assert ds[1][0].equal(images[2]) and ds[1][1] == 2


def test_trainer_sees_float_batches(fashion_root):
    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            images, labels = batch
            assert images.dtype == torch.float32 and images.max() <= 1.0
            assert labels.dtype == torch.int64
            return self.layer(images.mean().view(1, 1)).sum()

        def validation_step(self, batch, batch_idx):
            assert batch[0].dtype == torch.float32

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = FashionMNISTDataModule(root=str(fashion_root), batch_size=32, val_size=50)
    trainer = L.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Probe(), datamodule=dm)


def test_batch_larger_than_train_split_is_an_error(fashion_root):
    dm = FashionMNISTDataModule(root=str(fashion_root), batch_size=1024, val_size=50)
    dm.setup("fit")
    with pytest.raises(ValueError, match="lower batch_size"):
        dm.train_dataloader()


# -- splits ---------------------------------------------------------------------------------
def test_splits_disjoint_sizes_and_test_apart(fashion_root):
    dm = FashionMNISTDataModule(root=str(fashion_root), val_size=50)
    dm.setup()
    train, val = dm.split_indices("train")["train"], dm.split_indices("val")["train"]
    assert len(train) == N_TRAIN - 50 and len(val) == 50
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(range(N_TRAIN))
    assert dm.split_indices("pretrain").keys() == {"train"}
    assert dm.split_indices("pretrain")["train"].equal(train)
    assert list(dm.split_indices("test")) == ["test"]  # its own source, never train/val
    assert len(dm.split_indices("test")["test"]) == N_TEST
    sizes = {s: len(dm.eval_dataloader(s, batch_size=64).dataset) for s in ("train", "val", "test")}
    assert sizes == {"train": N_TRAIN - 50, "val": 50, "test": N_TEST}


def test_eval_dataloader_is_ordered_and_complete(fashion_root):
    arrays = mnist_arrays()
    dm = FashionMNISTDataModule(root=str(fashion_root), val_size=50)
    labels = torch.cat([y for _, y in dm.eval_dataloader("test", batch_size=64)])
    assert labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()  # no shuffle, no drop
    assert len(dm.val_dataloader()) == 1


def test_seeded_split_is_reproducible(fashion_root):
    def val(seed):
        return FashionMNISTDataModule(root=str(fashion_root), seed=seed, val_size=50).split_indices(
            "val"
        )["train"]

    assert val(0).equal(val(0))
    assert not val(0).equal(val(1))


def test_cifar10_layout_and_splits(tmp_path, monkeypatch):
    data = make_cifar10(tmp_path, monkeypatch)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=16, val_size=30)
    dm.setup()
    ds = dm.dataset("test")
    assert ds.images.shape == (60, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.images.equal(torch.from_numpy(data[5]).view(60, 3, 32, 32))  # planes -> (C, H, W)
    assert len(dm.split_indices("train")["train"]) == 5 * 60 - 30
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and labels.shape == (16,)


def test_stl10_pretrains_on_unlabeled_plus_labelled_train(tmp_path):
    make_stl10(tmp_path)
    dm = STL10DataModule(root=str(tmp_path), batch_size=8, val_size=10)
    dm.setup()
    pretrain = dm.split_indices("pretrain")
    assert pretrain.keys() == {"unlabeled", "train"} and len(pretrain["unlabeled"]) == 30
    val = dm.split_indices("val")["train"]
    assert set(pretrain["train"].tolist()).isdisjoint(val.tolist()) and len(val) == 10
    assert len(dm.train_dataloader().dataset) == 30 + 40 - 10
    images, labels = next(iter(dm.eval_dataloader("train")))
    assert images.shape == (8, 3, 96, 96) and labels.min() >= 0 and labels.max() <= 9
    unlabeled = dm.dataset("pretrain").datasets[0]
    assert unlabeled.source == "unlabeled" and (unlabeled.labels == -1).all()


# -- missing data -----------------------------------------------------------------------------
def test_missing_dataset_offline_says_what_to_run(tmp_path, no_network):
    dm = FashionMNISTDataModule(root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert "missing train-images-idx3-ubyte" in message and str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "python -m cpc.data.prepare fashion_mnist" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no torchvision trace


@pytest.mark.parametrize("name", ["mnist", "cifar10", "stl10"])
def test_missing_other_datasets_offline(tmp_path, no_network, name):
    with pytest.raises(DatasetNotFoundError, match=f"python -m cpc.data.prepare {name} --root"):
        prepare_mod.prepare(name, str(tmp_path))


def test_setup_without_files_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setattr(tvd.mnist, "download_and_extract_archive", lambda *a, **k: pytest.fail())
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        MNISTDataModule(root=str(tmp_path)).setup("fit")


def test_prepare_copies_the_debian_files(tmp_path, monkeypatch, no_network):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, array in mnist_arrays().items():
        write_idx(tmp_path / name, array)
        (debian / f"{name}.gz").write_bytes(gzip.compress((tmp_path / name).read_bytes()))
    monkeypatch.setattr(FashionMNISTDataModule, "debian_dir", debian)
    assert prepare_mod.main(["fashion_mnist", "--root", str(tmp_path / "data"), "--no-apt"]) == 0
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), val_size=50)
    dm.setup("test")
    assert len(dm.dataset("test")) == N_TEST


# -- image folders --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_resizes_and_crops(tmp_path, channels):
    make_image_folder(tmp_path)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, channels=channels, val_size=0.25)
    dm.setup()
    assert len(dm.dataset("train")) == 9 and len(dm.dataset("val")) == 3
    images, labels = next(iter(dm.eval_dataloader("train")))
    assert images.shape == (9, channels, 16, 16) and images.dtype == torch.uint8
    assert sorted(set(labels.tolist())) == [0, 1]


def test_image_folder_skips_corrupt_files_with_one_warning(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "cat" / "empty.jpg").write_bytes(b"")
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=8, val_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith(
        f"skipped 2 unreadable images in {tmp_path}"
    )
    assert len(dm.dataset("train")) + len(dm.dataset("val")) == 12


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        _ = ImageFolderDataModule(root=str(tmp_path / "absent")).class_names
    with pytest.raises(DatasetNotFoundError, match="no class folders"):
        ImageFolderDataModule(root=str(tmp_path)).setup("fit")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="no images"):
        ImageFolderDataModule(root=str(tmp_path)).setup("fit")
    (tmp_path / "cat" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="all 1 image files .* are unreadable"):
        ImageFolderDataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="no test split: set test_root"):
        ImageFolderDataModule(root=str(tmp_path)).test_dataloader()


def test_image_folder_test_root_uses_train_class_order(tmp_path):
    make_image_folder(tmp_path / "train")
    make_image_folder(tmp_path / "test", per_class=2)
    (tmp_path / "test" / "cat").rename(tmp_path / "test" / "dog_only")  # unknown class
    dm = ImageFolderDataModule(root=str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    with pytest.raises(ValueError, match="dog_only"):
        dm.setup("test")
