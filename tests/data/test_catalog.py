"""Adding a torchvision-style dataset is one class: defined here, fetched by prepare, trained
through the CLI, and its channels checked against the encoder's."""

from pathlib import Path

import pytest
import torch
from helpers import fit_args

from cpc.cli import cli_main
from cpc.data import prepare
from cpc.data.catalog import TorchvisionDataModule, registry


class ToyDataModule(TorchvisionDataModule):
    """24 train / 8 test random 3x28x28 images in 2 classes, "downloaded" as one file."""

    name, title, folder, files = "toy", "Toy", "toy", ("toy.pt",)
    num_channels, image_size, class_names = 3, (28, 28), ["a", "b"]

    @classmethod
    def fetch(cls, root: str) -> None:
        g = torch.Generator().manual_seed(0)
        splits = {
            source: (
                torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8),
                torch.arange(n) % 2,
            )
            for source, n in (("train", 24), ("test", 8))
        }
        (Path(root) / cls.folder).mkdir(parents=True, exist_ok=True)
        torch.save(splits, Path(root) / cls.folder / "toy.pt")

    def read(self, source):
        return torch.load(Path(self.root) / self.folder / "toy.pt")[source]


def toy_args(root: Path, out: Path, *extra: str) -> list[str]:
    toy = {"data": f"{__name__}.ToyDataModule", "data.val_size": 6}
    return fit_args(root, out, *extra, **toy, **{"data.image_size": None, "data.channels": None})


@pytest.mark.slow
def test_a_new_dataset_is_one_class_and_trains_through_the_cli(tmp_path):
    assert registry()["toy"] is ToyDataModule
    args = toy_args(tmp_path / "data", tmp_path / "run", "--model.encoder.in_channels=3")
    cli = cli_main(args)  # prepare_data fetches it, setup reads it
    assert (tmp_path / "data" / "toy" / "toy.pt").is_file()
    assert cli.trainer.global_step == 2 and cli.datamodule.num_classes == 2
    assert prepare.main(["toy", "--root", str(tmp_path / "data")]) == 0  # already there


@pytest.mark.slow
def test_encoder_channels_must_follow_the_data(tmp_path):
    with pytest.raises(ValueError, match=r"3 channels but the encoder expects 1: set model\.enc"):
        cli_main(toy_args(tmp_path / "data", tmp_path / "run"))


def test_setup_without_files_names_the_prepare_command(tmp_path):
    with pytest.raises(Exception, match="python -m cpc.data.prepare toy"):
        ToyDataModule(root=str(tmp_path)).setup("fit")
