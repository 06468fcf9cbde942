"""``cpc finetune``: a pretrained encoder's weights are where it starts, the labelled subset is
class-balanced and saved, the epoch is chosen on val and test is scored once, bad input is
one line, and a killed fine-tune resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, data_args, fit_args, write_image_folder

from cpc.cli import cli_main
from cpc.data import ImageFolderDataModule
from cpc.finetune.cli import finetune_main

pytestmark = pytest.mark.slow  # every test here trains

RUN = Path("lightning_logs") / "version_0"


def finetune_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        *data_args(folder, **{"data.test_root": folder.parent / "test"}),
        "--model.encoder=cpc.models.encoder.ResNetEncoder",
        "--model.encoder.width=8",
        "--trainer.max_steps=4",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.val_check_interval=2",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={out}",
        *extra,
    ]


@pytest.fixture
def labelled(tiny_folder: Path) -> Path:
    """``tiny_folder`` (24 images, 2 classes) with a test folder of 8 images beside it."""
    write_image_folder(tiny_folder.parent / "test", per_class=4)
    return tiny_folder


@pytest.fixture
def pretrained(labelled: Path, tmp_path: Path) -> Path:
    """last.ckpt of a 2-step ``cpc fit`` with the same width-8 encoder."""
    cli_main(fit_args(labelled, tmp_path / "pre"))
    return tmp_path / "pre" / RUN / "checkpoints" / "last.ckpt"


def encoder_weights(state: dict) -> dict:
    return {
        k.removeprefix("encoder."): v
        for k, v in state.items()
        if k.startswith("encoder.") and "compact_projection" not in k
    }


def test_a_frozen_fine_tune_keeps_the_pretrained_encoder_and_scratch_does_not(
    labelled, pretrained, tmp_path
):
    saved = encoder_weights(torch.load(pretrained, weights_only=True)["state_dict"])
    frozen = finetune_main(
        finetune_args(labelled, tmp_path / "ft", f"--ckpt_path={pretrained}", "--model.mode=linear")
    )
    tuned = encoder_weights(frozen.model.state_dict())
    assert saved.keys() == tuned.keys() and all(torch.equal(saved[k], tuned[k]) for k in saved)
    assert frozen.model.hparams.pretrained == str(pretrained)

    scratch = finetune_main(finetune_args(labelled, tmp_path / "scratch", "--model.mode=linear"))
    fresh = encoder_weights(scratch.model.state_dict())
    assert not torch.equal(fresh["stem.0.weight"], saved["stem.0.weight"])
    report = json.loads((tmp_path / "scratch" / RUN / "checkpoints" / "report.json").read_text())
    assert report["pretrained"] is None and report["mode"] == "linear"


def test_full_fine_tune_moves_the_encoder_from_its_pretrained_start(labelled, pretrained, tmp_path):
    saved = encoder_weights(torch.load(pretrained, weights_only=True)["state_dict"])
    cli = finetune_main(finetune_args(labelled, tmp_path / "ft", f"--ckpt_path={pretrained}"))
    tuned = encoder_weights(cli.model.state_dict())
    moved = (tuned["stem.0.weight"] - saved["stem.0.weight"]).abs().max().item()
    assert 0 < moved < 0.05  # trained from the checkpoint, at the encoder's lower rate


def test_labelled_subset_is_balanced_saved_and_selection_sees_no_test(
    labelled, tmp_path, monkeypatch
):
    reads = []
    test_loader = ImageFolderDataModule.test_dataloader

    def record(self):
        reads.append(self.trainer.state.fn)
        return test_loader(self)

    monkeypatch.setattr(ImageFolderDataModule, "test_dataloader", record)
    cli = finetune_main(finetune_args(labelled, tmp_path / "ft", "--data.labels_per_class=3"))
    record_file = json.loads((tmp_path / "ft" / RUN / "labelled_subset.json").read_text())
    data = cli.datamodule
    indices = torch.tensor(record_file["indices"])
    labels = data._source("train")[1]
    assert record_file["count"] == 6 and torch.bincount(labels[indices]).tolist() == [3, 3]
    assert not set(indices.tolist()) & set(data._train_val_indices()[1].tolist())  # no val image
    assert torch.equal(indices, data.labelled_indices())  # what the fit trained on

    assert reads == ["test"]  # the test split is read once, after the fit
    best = cli.trainer.checkpoint_callback
    report = json.loads((tmp_path / "ft" / RUN / "checkpoints" / "report.json").read_text())
    assert report["checkpoint"] == best.best_model_path and "val_acc" not in report
    assert report["val_top1"] == pytest.approx(float(best.best_model_score))
    assert report["labels"] == {"per_class": 3, "fraction": None, "seed": 0, "count": 6}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data.labels_per_class=50"], "labels_per_class 50 is more than class"),
        (["--model.encoder.width=16"], "has another encoder: blocks.0.body.0.weight"),
        (["--data.labels_per_class=2", "--data.label_fraction=0.5"], "not both"),
    ],
)
def test_bad_input_is_one_line(labelled, pretrained, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message) as err:
        finetune_main(finetune_args(labelled, tmp_path / "ft", f"--ckpt_path={pretrained}", *extra))
    assert "\n" not in str(err.value)


def test_an_unlabelled_data_module_is_refused(labelled, tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFolderDataModule, "has_eval_splits", property(lambda self: False))
    with pytest.raises(ValueError, match="cpc finetune needs a labelled data module"):
        finetune_main(finetune_args(labelled, tmp_path / "ft"))


def test_cpc_fit_refuses_a_label_budget(labelled, tmp_path):
    with pytest.raises(ValueError, match="are for cpc finetune"):
        cli_main(fit_args(labelled, tmp_path / "pre", "--data.labels_per_class=3"))


def test_a_killed_fine_tune_resumes_bit_identical(labelled, pretrained, tmp_path):
    every_step = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"monitor": "val/acc", "mode": "max", "save_last": True},
        },
        {
            "class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
            "init_args": {"every_n_train_steps": 1},
        },
    ]

    def args(out: Path, *extra: str, kill: dict | None = None) -> list[str]:
        callbacks = every_step + [{"class_path": "faults.KillAt", "init_args": kill}] * bool(kill)
        return finetune_args(
            labelled,
            out,
            f"--ckpt_path={pretrained}",
            "--trainer.max_steps=7",
            "--data.batch_size=4",
            "--trainer.deterministic=true",
            "--seed_everything=5",
            f"--trainer.callbacks={json.dumps(callbacks)}",
            *extra,
        )

    finetune_main(args(tmp_path / "whole"))
    whole_last = tmp_path / "whole" / RUN / "checkpoints" / "last.ckpt"
    out = tmp_path / "killed"
    last = out / RUN / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'reliability'}"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "cpc.cli", "finetune", *args(out, kill={"step": 5})]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == 5

    resumed = finetune_main(args(out, f"--ckpt_path={last}"))
    assert resumed.trainer.global_step == 7
    # the final weights (the module itself holds the best val checkpoint's after the test)
    expected, got = (torch.load(p, weights_only=True)["state_dict"] for p in (whole_last, last))
    differ = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differ, f"{len(differ)} tensors differ: {differ}"


def test_ctrl_c_saves_last_ckpt_says_where_and_resumes(labelled, pretrained, tmp_path):
    """SIGINT during step 3 of a fine-tune: last.ckpt at step 4 (no periodic save before it:
    ``--checkpoint.every_n_train_steps 1000``), one line naming it, exit status 1; resuming
    from it goes on to the end."""
    from cpc.finetune.cli import CALLBACKS

    stop = {"class_path": "faults.SignalAt", "init_args": {"step": 3, "signum": signal.SIGINT}}
    out = tmp_path / "stopped"
    args = finetune_args(
        labelled,
        out,
        f"--ckpt_path={pretrained}",
        "--trainer.max_steps=50",
        "--checkpoint.every_n_train_steps=1000",
        "--checkpoint.every_n_minutes=0",
        f"--trainer.callbacks={json.dumps([*CALLBACKS, stop])}",
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'reliability'}"}
    env.update(OMP_NUM_THREADS="1", CPC_DEBUG="")
    command = [sys.executable, "-m", "cpc.cli", "finetune", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    last = out / RUN / "checkpoints" / "last.ckpt"
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "saved" in line]
    assert lines == [f"stopped by a signal at step 4: saved {last}; resume with --ckpt_path {last}"]
    assert torch.load(last, weights_only=True)["global_step"] == 4
    resumed = finetune_main(
        finetune_args(labelled, out, f"--ckpt_path={last}", "--trainer.max_steps=6")
    )
    assert resumed.trainer.global_step == 6
