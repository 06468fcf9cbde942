"""Each bad input gets one clear message that says what to do."""

import pytest
from helpers import fit_args, resolves, write_image_folder

from cpc.cli import cli_main


def run(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_unknown_config_key(capsys, tiny_folder, tmp_path):
    code, err = run(capsys, fit_args(tiny_folder, tmp_path, "--model.lrr=0.1"))
    assert code == 2 and "lrr" in err


def test_wrong_type(capsys, tiny_folder, tmp_path):
    code, err = run(capsys, fit_args(tiny_folder, tmp_path, "--model.lr=fast"))
    assert code == 2 and "model.lr" in err and "fast" in err


@pytest.mark.slow
def test_image_smaller_than_one_patch(tmp_path):
    folder = write_image_folder(tmp_path / "small", size=6)
    args = fit_args(folder, tmp_path / "run", "--data.image_size=6")
    with pytest.raises(ValueError, match="smaller than one patch"):
        cli_main(args)


@pytest.mark.slow
def test_grid_with_too_few_rows_for_the_steps(tiny_folder, tmp_path):
    task = '[{"class_path": "cpc.tasks.CPCTask", "init_args": {"steps": [5, 6]}}]'
    with pytest.raises(ValueError, match="need at least 7"):
        cli_main(fit_args(tiny_folder, tmp_path / "run", f"--model.tasks={task}"))
    assert not (tmp_path / "run").exists()  # it failed in its first step: no run folder


def test_a_data_root_that_does_not_exist_is_refused_not_filled(tmp_path):
    from cpc.data import DatasetNotFoundError, FashionMNISTDataModule

    typo = tmp_path / "typo" / "fm"
    with pytest.raises(
        DatasetNotFoundError, match=f"data.root {typo} does not exist, nor its parent"
    ):
        FashionMNISTDataModule(root=str(typo)).prepare_data()
    assert not (tmp_path / "typo").exists()


@pytest.mark.slow
def test_no_validation_images_with_the_report_on_fails_before_training(tiny_folder, tmp_path):
    args = fit_args(tiny_folder, tmp_path, **{"data.val_size": 0, "report.enabled": "true"})
    with pytest.raises(ValueError, match=r"needs validation images.*set data.val_size > 0"):
        cli_main(args)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing trained


@pytest.mark.slow
def test_one_class_with_the_report_on_fails_before_training(tmp_path):
    folder = write_image_folder(tmp_path / "one", classes=("a",))
    args = fit_args(folder, tmp_path / "run", **{"report.enabled": "true"})
    with pytest.raises(ValueError, match=r"needs at least 2 classes .* got 1: add a class"):
        cli_main(args)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing trained


@pytest.mark.slow
def test_rgb_data_with_a_grayscale_encoder(tmp_path):
    folder = write_image_folder(tmp_path / "rgb", mode="RGB")
    args = fit_args(folder, tmp_path / "run", "--data.channels=3")
    with pytest.raises(ValueError, match="3 channels but the encoder expects 1"):
        cli_main(args)


@pytest.mark.slow
def test_console_script_prints_one_line_not_a_traceback(capsys, monkeypatch, tmp_path):
    from cpc import cli

    folder = write_image_folder(tmp_path / "small", size=6)
    args = fit_args(folder, tmp_path / "run", "--data.image_size=6")
    monkeypatch.setattr("sys.argv", ["cpc", *args])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    message = str(exit_info.value.code)
    assert message.startswith("cpc: error: image side 6 is smaller than one patch")
    assert "\n" not in message


def test_missing_dataset_offline_is_one_line(monkeypatch, tmp_path):
    from cpc import cli
    from cpc.data import FashionMNISTDataModule

    def offline(self):
        from cpc.data import DatasetNotFoundError

        raise DatasetNotFoundError("Fashion-MNIST not found in data: run `make data`")

    monkeypatch.setattr(FashionMNISTDataModule, "prepare_data", offline)
    fashion = {"data": "cpc.data.FashionMNISTDataModule", "trainer.max_steps": 1}
    no_folder = {"data.image_size": None, "data.channels": None, "data.val_size": None}
    args = fit_args(tmp_path, tmp_path / "run", **fashion, **no_folder)
    monkeypatch.setattr("sys.argv", ["cpc", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert str(exit_info.value.code).startswith("cpc: error: Fashion-MNIST not found")


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    monkeypatch, tiny_folder, tmp_path
):
    import torch

    from cpc.module import CPCModule

    shared_step = CPCModule.shared_step

    def diverging(self, images, stage):
        out = shared_step(self, images, stage)
        if stage == "train" and self.global_step >= 2:  # the first epoch (2 steps) is fine
            out["train/loss"] = out["train/loss"] * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(CPCModule, "shared_step", diverging)
    args = fit_args(tiny_folder, tmp_path / "run", "--trainer.max_epochs=3")
    with pytest.raises(FloatingPointError, match="non-finite loss at step 2"):
        cli_main(args)
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert torch.load(last, weights_only=False)["global_step"] == 2


def test_a_config_naming_moved_classes_says_where_each_is_now(tmp_path):
    """An older run's config.yaml names cpc.loggers / cpc.checkpoint_io classes: one line
    lists each with its new class_path, and every new path imports."""
    from cpc.run.options import MOVED, reject_renamed

    old_run = tmp_path / "config.yaml"
    old_run.write_text(
        "trainer:\n  logger:\n    class_path: cpc.loggers.RunLogger\n"
        "  callbacks:\n  - class_path: cpc.checkpoint_io.PeriodicCheckpoint\n"
    )
    with pytest.raises(ValueError) as info:
        reject_renamed(["fit", "--config", str(old_run)])
    assert str(info.value) == (
        f"classes moved: in {old_run}, replace cpc.checkpoint_io.PeriodicCheckpoint by "
        "cpc.run.periodic_checkpoint.PeriodicCheckpoint, cpc.loggers.RunLogger by "
        "cpc.run.loggers.RunLogger"
    )
    with pytest.raises(ValueError, match="in the command line, replace cpc.loggers.RunLogger"):
        reject_renamed(["fit", "--trainer.logger=cpc.loggers.RunLogger"])
    assert all(resolves(new) and not resolves(old) for old, new in MOVED.items())
    reject_renamed(["fit", "--trainer.logger=cpc.run.loggers.RunLogger"])  # the new path passes
