"""Atomic checkpoint writes: an interrupted or failing write leaves the previous checkpoint."""

import errno
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from faults import fill_disk
from helpers import fit_args, quick_fit_args

from cpc.cli import cli_main, main
from cpc.models import ResNetEncoder
from cpc.run.checkpoint_files import AtomicCheckpointIO, CheckpointWriteError, verify_checkpoint


def partial_save(error: BaseException):
    """A torch.save that writes half a checkpoint, then fails with ``error``."""

    def save(obj, file):
        file.write(b"PK\x03\x04 half a zip file")
        file.flush()
        raise error

    return save


def test_write_replaces_the_file_whole_and_leaves_no_temp(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    (path.parent / ".last.ckpt.killed.tmp").write_bytes(b"left by a kill -9")
    io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert torch.equal(io.load_checkpoint(path)["w"], torch.zeros(3))
    assert os.listdir(path.parent) == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like other outputs, not 0600


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))]
)
def test_interrupted_or_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    monkeypatch.setattr("cpc.run.checkpoint_files.torch.save", partial_save(error))
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else CheckpointWriteError
    with pytest.raises(expected) as info:
        io.save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # the half-written temp file is gone
    if expected is CheckpointWriteError:
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "No space left" in message


@pytest.mark.slow
def test_fit_writes_atomically_and_a_full_disk_is_one_line(tiny_folder, tmp_path, monkeypatch):
    cli = cli_main(quick_fit_args(tiny_folder, tmp_path / "run"))
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    (before,) = (tmp_path / "run").rglob("last.ckpt")
    good = torch.load(before, weights_only=True)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("cpc.run.checkpoint_files.os.fsync", full_disk)
    args = quick_fit_args(tiny_folder, tmp_path / "run", "--trainer.max_epochs=2")
    monkeypatch.setattr(sys, "argv", ["cpc", *args, f"--ckpt_path={before}"])
    with pytest.raises(SystemExit) as info:
        main()
    message = str(info.value.code)
    assert (
        message.startswith("cpc: error: no space left on the device writing")
        and str(before.parent) in message
    )
    assert "\n" not in message
    after = torch.load(before, weights_only=True)  # the previous checkpoint, intact
    assert after["global_step"] == good["global_step"] == 2
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]


class FullDisk(io.FileIO):
    """A file on a disk that is full after ``room`` bytes (a real write's ENOSPC)."""

    room = 1000

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_disk_filling_inside_torch_save_is_a_write_error_not_unexpected_pos(
    tmp_path, monkeypatch
):
    """torch turns the OSError of its writes into ``RuntimeError: ... unexpected pos``."""
    io_, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io_.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    monkeypatch.setattr("cpc.run.checkpoint_files.os.fdopen", lambda fd, mode: FullDisk(fd, "r+"))
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        io_.save_checkpoint({"step": 2, "w": torch.zeros(10_000)}, path)
    monkeypatch.undo()
    assert io_.load_checkpoint(path)["step"] == 1 and os.listdir(tmp_path) == ["last.ckpt"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB tmpfs (needs root; skipped where it cannot be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("where", ["periodic", "end of fit"])
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(
    where, tiny_folder, tiny_disk, monkeypatch, capsys
):
    """A real full disk (3 MB tmpfs): filled before step 3 (the periodic save after it fails)
    or by the compact fit at the end (its save into last.ckpt fails)."""
    fills = [{"class_path": "faults.FillDiskAt", "init_args": {"step": 2}}]
    periodic = {"class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint", "init_args": {}}
    callbacks = json.dumps([periodic, *fills] if where == "periodic" else [periodic])
    if where == "end of fit":
        fit_compact = ResNetEncoder.fit_compact

        def fill_then_fit(self, pooled):
            fill_disk(tiny_disk)
            fit_compact(self, pooled)

        monkeypatch.setattr(ResNetEncoder, "fit_compact", fill_then_fit)
    args = fit_args(tiny_folder, tiny_disk, f"--trainer.callbacks={callbacks}")
    args += ["--checkpoint.every_n_train_steps=1", "--trainer.max_epochs=2"]
    args += ["--model.encoder.compact_dim=4", "--model.encoder.pool_size=2"]
    monkeypatch.setattr(sys, "argv", ["cpc", *args])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main()
    message = str(info.value.code)
    (last,) = tiny_disk.rglob("last.ckpt")
    assert message.startswith(f"cpc: error: no space left on the device writing {last}")
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    assert verify_checkpoint(last)  # whole, with its sha256
    assert torch.load(last, weights_only=True)["global_step"] == (2 if where == "periodic" else 4)
