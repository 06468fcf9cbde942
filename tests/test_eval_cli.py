import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import data_args, fit_args
from PIL import Image

import cpc
from cpc.cli import cli_main, eval_main, main

MODELS = {"encoder", "encoder_compact", "random_init", "random_init_compact", "pixels"}
PROBE = "{epochs: 1, weight_decays: [0.0]}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """28x28 grayscale PNGs in class folders: train (12 a class) and test (4 a class)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for cls in ["a", "b"]:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def eval_data_args(folders: Path) -> list[str]:
    return data_args(folders / "train", **{"data.test_root": folders / "test"})


def eval_fit_args(folders: Path, out: Path, *extra: str) -> list[str]:
    """:func:`helpers.fit_args` on ``folders`` with a test split, a logged report and online kNN."""
    return fit_args(
        folders / "train",
        out,
        *extra,
        **{
            "data.test_root": folders / "test",
            "report.enabled": None,
            "trainer.log_every_n_steps": 1,
            "online_knn.bank_size": 16,
            "report.k": 5,
            "report.probe_kwargs": PROBE,
        },
    )


@pytest.fixture(scope="module")
def run(folders, tmp_path_factory):
    """One tiny fit shared by the tests below: (cli, run folder holding config and metrics)."""
    out = tmp_path_factory.mktemp("run")
    cli = cli_main(eval_fit_args(folders, out, "--report.pooling=full"))
    return cli, out / "lightning_logs" / "version_0"


@pytest.mark.slow
def test_fit_writes_report_metrics_and_checkpoints_in_one_run_folder(run):
    cli, folder = run
    assert torch.isfinite(cli.trainer.callback_metrics["val/knn_top1"])
    ckpts = folder / "checkpoints"
    assert {p.name for p in ckpts.glob("*.ckpt")} == {"last.ckpt", "epoch=0-step=2.ckpt"}
    assert cli.trainer.checkpoint_callback.monitor == "val/loss"
    report = json.loads((ckpts / "report.json").read_text())
    assert set(report) == MODELS | {"meta"}
    assert set(report["encoder"]["knn"]) == {"top1", "top5", "val_top1"}
    assert report["meta"]["k"] == 5 and report["meta"]["test_split"] == "test"
    # pooling "full": every latent of the 6x6 grid, 16 channels each
    assert report["meta"]["pooling"] == "full" and report["meta"]["feature_dim"] == 16 * 36
    online = next(c for c in cli.trainer.callbacks if type(c).__name__ == "OnlineKNN")
    report_callback = next(
        c for c in cli.trainer.callbacks if type(c).__name__ == "EvaluationReport"
    )
    assert online.protocol is report_callback.protocol  # linked whole
    assert (online.protocol.pooling, online.protocol.k) == ("full", 5)
    assert report["meta"]["checkpoint"] == str(ckpts / "last.ckpt")
    # TensorBoard events, metrics.csv and config.yaml share the version folder
    assert list(folder.glob("events.out.tfevents.*")) and (folder / "config.yaml").is_file()
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    assert [float(r["val/knn_top1"]) for r in rows if r["val/knn_top1"]] == [
        pytest.approx(cli.trainer.callback_metrics["val/knn_top1"].item())
    ]
    assert any(key.startswith("lr-") and row[key] for row in rows for key in row)


@pytest.mark.slow  # its fixture fits a run
def test_load_encoder_gives_the_trained_encoder_in_eval_mode(run):
    cli, folder = run
    encoder = cpc.load_encoder(folder / "checkpoints" / "last.ckpt")
    assert not encoder.training and encoder.num_features == cli.model.encoder.num_features
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), cli.model.encoder.eval()(images))
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        cpc.load_encoder(folder / "missing.ckpt")


@pytest.mark.slow
def test_cpc_eval_reproduces_the_fit_report(run, folders, tmp_path, capsys):
    _, folder = run
    ckpt = folder / "checkpoints" / "last.ckpt"
    fit_report = json.loads((folder / "checkpoints" / "report.json").read_text())
    args = [f"--ckpt_path={ckpt}", "--k=5", f"--probe_kwargs={PROBE}", "--progress=false"]
    report = eval_main([*args, *eval_data_args(folders), f"--out={tmp_path / 'r.json'}"])
    written = json.loads((tmp_path / "r.json").read_text())
    assert capsys.readouterr().out.splitlines()[-1] == f"report written to {tmp_path / 'r.json'}"
    assert set(written) == set(fit_report) and set(written["meta"]) >= set(fit_report["meta"]) - {
        "epoch",
        "global_step",
    }
    for name in MODELS:  # same weights, data, seed and probe: the same numbers
        assert written[name]["knn"] == pytest.approx(fit_report[name]["knn"])
        assert written[name]["linear"]["top1"] == pytest.approx(fit_report[name]["linear"]["top1"])
    assert report["meta"]["checkpoint"] == str(ckpt)

    # without --data the data module and report settings come from the run's config.yaml
    no_data = eval_main([f"--ckpt_path={ckpt}", "--progress=false", "--baselines=false"])
    assert set(no_data) == {"encoder", "encoder_compact", "meta"}
    assert (no_data["meta"]["k"], no_data["meta"]["pooling"]) == (5, "full")
    mean = eval_main([*args, "--baselines=false", "--pooling=mean"])  # unless given
    assert mean["meta"]["feature_dim"] == 16
    assert no_data["encoder"]["knn"] == pytest.approx(fit_report["encoder"]["knn"])
    assert (folder / "checkpoints" / "last.report.json").is_file()

    # a run folder, as python -m cpc.viz takes it: its last.ckpt
    from_folder = eval_main([f"--ckpt_path={folder}", "--progress=false", "--baselines=false"])
    assert from_folder["meta"]["checkpoint"] == str(ckpt)


@pytest.mark.slow
def test_resume_from_last_ckpt_keeps_the_online_knn_schedule(run, folders, tmp_path):
    _, folder = run
    resume = [
        "--trainer.max_epochs=2",
        f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
        "--online_knn.every_n_epochs=2",  # 2nd validation run overall: due after the resume
        "--report.enabled=false",
    ]
    cli = cli_main(eval_fit_args(folders, tmp_path, *resume))
    assert cli.trainer.global_step == 4
    assert "val/knn_top1" in cli.trainer.callback_metrics
    assert not list(tmp_path.rglob("report.json"))


@pytest.mark.slow
def test_print_config_shows_the_callbacks_and_round_trips(folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(eval_fit_args(folders, tmp_path, "--report.enabled=false", "--print_config"))
    dumped = capsys.readouterr().out
    config = yaml.safe_load(dumped)
    assert config["report"]["enabled"] is False and config["online_knn"]["every_n_epochs"] == 1
    checkpoint, periodic, lr_monitor = config["trainer"]["callbacks"]  # defaults, replaceable
    assert checkpoint["class_path"].endswith("ModelCheckpoint")
    assert checkpoint["init_args"]["monitor"] == "val/loss" and checkpoint["init_args"]["save_last"]
    assert periodic["class_path"] == "cpc.run.periodic_checkpoint.PeriodicCheckpoint"
    assert periodic["init_args"]["every_n_train_steps"] == 100  # the README's "every 100 steps"
    plugin = config["trainer"]["plugins"][0]["class_path"]
    assert plugin == "cpc.run.checkpoint_files.AtomicCheckpointIO"
    assert lr_monitor["init_args"]["logging_interval"] == "step"
    assert config["trainer"]["logger"]["class_path"] == "cpc.run.loggers.RunLogger"

    path = tmp_path / "dumped.yaml"
    path.write_text(dumped)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(path), "--print_config"])
    assert capsys.readouterr().out == dumped


def test_cpc_eval_help_and_missing_checkpoint(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["cpc", "eval", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0 and "--ckpt_path" in capsys.readouterr().out

    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {missing}: pass a .ckpt"):
        eval_main([f"--ckpt_path={missing}"])  # cpc's main prints it as one line
