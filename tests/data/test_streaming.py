"""StreamingDataModule: decoding, the data module contract, exact mid-epoch resume, DDP shards.

Each generated image spells its id in pixels (0, 0) and (0, 1) (PNG, lossless, stored as it
is), so a callback can read which images every step trained on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from helpers import FIT, options, write_image_folder
from test_stream_prepare import write_photos
from torchvision.io import encode_png

from cpc import load_encoder
from cpc.cli import cli_main, eval_main
from cpc.data import ImageFolderDataModule, StreamingDataModule
from cpc.data.datasets import DatasetNotFoundError
from cpc.data.stream_prepare import prepare_stream
from cpc.data.streaming import DecodeImage
from cpc.eval.features import extract_features
from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol
from cpc.run.preflight import check_checkpoint

ROOT = Path(__file__).parents[2]
#: seconds the 2-process DDP fit may take (about 40 s on one core) before it counts as hung
DDP_TIMEOUT = 300


class SeenIds(L.Callback):
    """Appends the ids of each training batch's images to ``folder/rank<R>.jsonl`` (a line a
    step); ``stop_at``: raise (a killed run) at the start of that step, after the checkpoint
    of the step before."""

    def __init__(self, folder: str, stop_at: int | None = None) -> None:
        self.folder = Path(folder)
        self.stop_at = stop_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.stop_at:
            raise RuntimeError("killed")
        pixels = (batch[0][:, 0, 0, :2] * 255).round().long()  # (B, 2), images in [0, 1]
        ids = (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
        with open(self.folder / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(ids) + "\n")

    @staticmethod
    def read(folder: Path, rank: int = 0) -> list[list[int]]:
        lines = (folder / f"rank{rank}.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """40 gray 28x28 images with ids 0..39, prepared as a stream (several chunks)."""
    root = tmp_path_factory.mktemp("stream")
    write_photos(root / "photos", 40, size=28)
    prepare_stream(str(root / "photos"), str(root / "out"), chunk_bytes="4kB", progress=False)
    return root / "out"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("labelled") / "images")


def stream_args(stream: Path, labelled: Path, out: Path, *extra: str, **overrides) -> list[str]:
    """``cpc fit`` on ``stream`` (28x28 gray, batch 4) with ``labelled`` for validation."""
    data = {
        "data": "cpc.data.StreamingDataModule",
        "data.input_dir": stream,
        "data.image_size": 28,
        "data.channels": 1,
        "data.batch_size": 4,
        "data.num_workers": 2,
        "data.labelled": "cpc.data.ImageFolderDataModule",
        "data.labelled.root": labelled,
        "data.labelled.image_size": 28,
        "data.labelled.channels": 1,
        "data.labelled.val_size": 0.25,
        "trainer.limit_val_batches": 1,
        "online_knn.every_n_epochs": 0,
        "trainer.logger": "false",
    }
    fit = {**FIT, "trainer.default_root_dir": out, **overrides}
    return ["fit", *options(data), *options(fit), *extra]


def test_decode_converts_resizes_and_crops_encoded_and_raw_images():
    rgb = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    encoded = {"image": memoryview(encode_png(rgb).numpy().tobytes()), "label": 1}
    image, label = DecodeImage(size=20, channels=1)(encoded)
    assert image.shape == (1, 20, 20) and image.dtype == torch.uint8 and label == 1
    same, _ = DecodeImage(size=30, channels=3)({"image": rgb[:, :, 5:35], "label": -1})
    assert torch.equal(same, rgb[:, :, 5:35])  # already S x S: untouched
    gray, _ = DecodeImage(size=30, channels=3)({"image": rgb[:1, :, :30], "label": -1})
    assert gray.shape == (3, 30, 30) and torch.equal(gray[0], gray[2])


def test_module_contract_and_one_line_errors(stream, labelled, tmp_path):
    lab = ImageFolderDataModule(str(labelled), image_size=28, channels=1, val_size=0.25)
    dm = StreamingDataModule(str(stream), image_size=28, channels=1, batch_size=4, labelled=lab)
    assert (dm.num_channels, dm.image_size, dm.num_classes, dm.val_size) == (1, (28, 28), 2, 0.25)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [-1] * 4  # images directly in the prepared folder
    assert len(dm.eval_dataloader("val").dataset) == 6
    with pytest.raises(ValueError, match="same image_size and channels"):
        StreamingDataModule(str(stream), image_size=32, channels=1, labelled=lab)
    with pytest.raises(ValueError, match="set data.labelled"):
        StreamingDataModule(str(stream), image_size=28, channels=1).eval_dataloader("train")
    with pytest.raises(DatasetNotFoundError, match="python -m cpc.data.prepare stream"):
        StreamingDataModule(str(tmp_path)).setup("fit")


@pytest.mark.slow
def test_killed_run_resumes_with_the_next_unseen_batch(stream, labelled, tmp_path):
    """2 epochs of 10 steps, killed at step 6 (a checkpoint every step) and resumed from
    last.ckpt: the steps see exactly the batches of an uninterrupted run (2 loader workers);
    then ``cpc eval`` of the resumed run's checkpoint scores it on the labelled set."""

    def run(name: str, *extra: str, stop_at: int | None = None) -> list[list[int]]:
        out = tmp_path / name
        out.mkdir()
        callbacks = [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": None, "save_last": True, "every_n_train_steps": 1},
            },
            {
                "class_path": f"{__name__}.SeenIds",
                "init_args": {"folder": str(out), "stop_at": stop_at},
            },
        ]
        args = stream_args(stream, labelled, out, f"--trainer.callbacks={json.dumps(callbacks)}")
        cli_main([*args, "--trainer.max_epochs=2", *extra])
        return SeenIds.read(out)

    full = run("full")
    with pytest.raises(RuntimeError, match="killed"):
        run("killed", stop_at=6)
    killed = SeenIds.read(tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    resumed = run("resumed", f"--ckpt_path={last}")
    assert len(full) == 20 and len(killed) == 6
    assert killed + resumed == full
    for epoch in (full[:10], full[10:]):  # every image once per epoch, shuffled
        ids = [i for batch in epoch for i in batch]
        assert sorted(ids) == list(range(40)) and ids != sorted(ids)
    assert full[:10] != full[10:]  # reshuffled each epoch
    ckpt = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    report = eval_main([f"--ckpt_path={ckpt}", "--baselines=false", "--progress=false"])
    # cpc eval reads the labelled folder: 18 train and 6 val images, no test split (val stands
    # in); its kNN is the one of the labelled set's features scored by hand
    meta = report["meta"]
    assert meta["split_sizes"] == {"train": 18, "val": 6} and meta["test_split"] == "val"
    labelled_dm = ImageFolderDataModule(str(labelled), image_size=28, channels=1, val_size=0.25)
    encoder, protocol = load_encoder(ckpt), EvalProtocol.from_mapping(meta)
    (bank, bank_y), (val, val_y) = (
        extract_features(encoder, labelled_dm.eval_dataloader(s), protocol.pooling, "cpu", False)
        for s in ("train", "val")
    )
    by_hand = KNN(protocol).fit(bank, bank_y, labelled_dm.num_classes).accuracy(val, val_y)
    assert report["encoder"]["knn"]["top1"] == by_hand["top1"]


@pytest.mark.slow
def test_without_labelled_images_the_compact_projection_is_fitted_on_the_stream(
    stream, labelled, tmp_path
):
    """data.labelled None (no validation, no report) with compact_dim: the end-of-fit PCA takes
    the stream's first images, and last.ckpt (the stream's position included) is a checkpoint
    that check_checkpoint reads weights-only."""
    args = [a for a in stream_args(stream, labelled, tmp_path) if "data.labelled" not in a]
    compact = ["--model.encoder.compact_dim=4", "--model.encoder.pool_size=2"]
    cli = cli_main([*args, *compact, "--data.num_workers=0", "--trainer.max_steps=3"])
    assert cli.datamodule.labelled is None and not cli.datamodule.has_eval_splits
    (last,) = tmp_path.rglob("last.ckpt")
    checkpoint = check_checkpoint(last)
    assert checkpoint["global_step"] == 3 and checkpoint["StreamingDataModule"]["train_loader"]
    encoder = load_encoder(last)
    assert encoder.compact_projection.fitted
    with torch.no_grad():
        assert encoder(torch.rand(2, 1, 28, 28)).shape == (2, 4)


@pytest.mark.slow
def test_two_ddp_processes_read_disjoint_shards(stream, labelled, tmp_path):
    """``cpc fit`` with 2 gloo processes on the CPU: each rank trains on its own half."""
    callbacks = [{"class_path": "test_streaming.SeenIds", "init_args": {"folder": str(tmp_path)}}]
    args = stream_args(
        stream,
        labelled,
        tmp_path,
        f"--trainer.callbacks={json.dumps(callbacks)}",
        "--trainer.enable_checkpointing=false",
        **{"trainer.strategy": "ddp", "trainer.devices": 2, "data.num_workers": 1},
    )
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, here.parent, here]))}
    command = [sys.executable, "-m", "cpc.cli", *args]
    # its own process group: a hung rank (the launcher starts the second) is killed with it
    output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    fit = subprocess.Popen(command, env=env, **output, preexec_fn=os.setpgrp)  # killpg below
    try:
        _, stderr = fit.communicate(timeout=DDP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(fit.pid, signal.SIGKILL)
        fit.communicate()
        pytest.fail(f"the 2-process fit did not end within {DDP_TIMEOUT} s")
    assert fit.returncode == 0, stderr[-2000:]
    ranks = [[i for batch in SeenIds.read(tmp_path, r) for i in batch] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 20  # 40 images, 5 steps of 4 on each rank
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(40))


@pytest.mark.slow
def test_streaming_example_config_trains_on_a_stream(tmp_path):
    """configs/streaming_example.yaml as shipped (its ResNet-18), on a generated 112-px RGB
    stream and labelled folder: one step and one validation batch."""
    write_image_folder(tmp_path / "photos", per_class=4, size=112, mode="RGB")
    prepare_stream(str(tmp_path / "photos"), str(tmp_path / "stream"), progress=False)
    write_image_folder(tmp_path / "labelled", size=96, mode="RGB")
    config = ROOT / "configs" / "streaming_example.yaml"
    args = [
        "fit",
        f"--config={config}",
        f"--data.input_dir={tmp_path / 'stream'}",
        f"--data.labelled.root={tmp_path / 'labelled'}",
        "--data.batch_size=2",
        "--data.labelled.batch_size=2",
        "--trainer.fast_dev_run=true",
        *options(
            {**FIT, "trainer.default_root_dir": tmp_path / "run", "model.encoder": None}
            | {"model.encoder.width": None}
        ),
    ]
    cli = cli_main(args)
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])
