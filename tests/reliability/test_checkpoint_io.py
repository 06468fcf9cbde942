"""Atomic checkpoint writes: an interrupted or failing write leaves the previous checkpoint."""

import errno
import os
import sys

import pytest
import torch
from helpers import quick_fit_args

from cpc.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
from cpc.cli import cli_main, main


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
    monkeypatch.setattr("cpc.checkpoint_io.torch.save", partial_save(error))
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

    monkeypatch.setattr("cpc.checkpoint_io.os.fsync", full_disk)
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
