"""DeviceLoader's batching, order and drop_last, on CPU tensors (the same code runs on CUDA)."""

import pytest
import torch

from cpc.data.device_loader import DeviceLoader


def data(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return images, torch.arange(n) * 10  # image i is all i, its label 10 i


def rows(batches):
    return [images[:, 0, 0, 0].tolist() for images, _ in batches]


def test_in_order_with_a_short_last_batch_or_dropped():
    loader = DeviceLoader(*data(10), 4, device="cpu")
    assert rows(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(loader) == 3
    for images, labels in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 2, 2)
        assert torch.equal(labels, images[:, 0, 0, 0].long() * 10)  # labels follow their image
    dropped = DeviceLoader(*data(10), 4, drop_last=True, device="cpu")
    assert rows(dropped) == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(dropped) == 2


def test_shuffle_is_a_new_permutation_every_pass_and_seeded():
    loader = DeviceLoader(*data(12), 4, shuffle=True, device="cpu")
    first, second = sum(rows(loader), []), sum(rows(loader), [])
    assert sorted(first) == sorted(second) == list(range(12)) and first != second
    again = DeviceLoader(*data(12), 4, shuffle=True, device="cpu")
    assert sum(rows(again), []) == first  # the same seed, the same order


def test_a_sampler_gives_the_order_and_length():
    class Resumed:  # a resumed epoch: 6 of 10 indices left
        def __iter__(self):
            return iter([9, 0, 5, 1, 7, 3])

        def __len__(self):
            return 6

    loader = DeviceLoader(*data(10), 4, drop_last=True, sampler=Resumed(), device="cpu")
    assert rows(loader) == [[9, 0, 5, 1]] and len(loader) == 1


def test_bad_input_is_a_clear_error():
    images, labels = data(4)
    with pytest.raises(ValueError, match="uint8 images"):
        DeviceLoader(images.float(), labels, 2, device="cpu")
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(images, labels[:3], 2, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, 0, device="cpu")


def test_data_module_serves_device_batches_of_the_training_split(tiny_folder):
    from cpc.data import ImageFolderDataModule

    kwargs = {"root": str(tiny_folder), "image_size": 28, "channels": 1, "batch_size": 4}
    dm = ImageFolderDataModule(**kwargs, val_size=0.25, device_data=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceLoader) and len(loader) == 18 // 4  # drop_last
    train = dm.dataset("pretrain")
    expected = sorted(train[i][0].sum().item() for i in range(len(train)))
    seen = [img.sum().item() for images, _ in loader for img in images.long()]
    assert len(seen) == 16 and set(seen) <= set(expected)
    assert not isinstance(ImageFolderDataModule(**kwargs).train_dataloader(), DeviceLoader)


@pytest.mark.parametrize(
    ("world_size", "device", "memory", "expected"),
    [
        (1, "cuda", 80e9, True),
        (2, "cuda", 80e9, False),
        (1, "cpu", 80e9, False),
        (1, "cuda", 1e5, False),
    ],
)
def test_device_data_by_default_on_one_cuda_device_with_room(
    monkeypatch, world_size, device, memory, expected
):
    from types import SimpleNamespace

    from cpc.data import FashionMNISTDataModule

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=memory)
    )
    dm = FashionMNISTDataModule()
    root = SimpleNamespace(root_device=torch.device(device))
    dm.trainer = SimpleNamespace(world_size=world_size, strategy=root)
    dataset = torch.utils.data.TensorDataset(torch.zeros(1000))  # 1000 images of 784 bytes
    assert dm._data_on_device(dataset) is expected


@pytest.mark.slow
def test_a_fit_trains_on_device_batches(tiny_folder, tmp_path):
    from helpers import quick_fit_args

    from cpc.cli import cli_main

    cli = cli_main(quick_fit_args(tiny_folder, tmp_path, "--data.device_data=true"))
    assert isinstance(cli.trainer.train_dataloader, DeviceLoader)
    assert cli.trainer.global_step == 18 // 8  # every full batch of the epoch
