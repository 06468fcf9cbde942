"""A checkpoint proves it is whole: every one written carries its sha256, every load path
checks it, and a damaged file is refused in one line (an older one without it still loads)."""

import struct
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import quick_fit_args, write_image_folder

from cpc import cli, load_encoder
from cpc.run.checkpoint_files import CHECKSUM_TAG, AtomicCheckpointIO, verify_checkpoint
from cpc.run.preflight import check_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 2-step fit: its run folder under ``<tmp>/run``, its images in ``<tmp>/images``."""
    tmp = tmp_path_factory.mktemp("checksum")
    folder = write_image_folder(tmp / "images")
    args = quick_fit_args(folder, tmp / "run", "--trainer.logger=true")
    cli.cli_main([*args, "--model.encoder.compact_dim=4", "--model.encoder.pool_size=2"])
    return tmp


def damaged_copy(path: Path, out: Path) -> Path:
    """``path`` with 0xDEADBEEF over the middle half of its largest tensor (up to 20 KB), in a
    copy of the run folder's layout: the damage of issue 22 (20 KB at 1.5 MB of a 3 MB
    ``last.ckpt``), which torch loads without a word."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        tensors = [info for info in archive.infolist() if "/data/" in info.filename]
        member = max(tensors, key=lambda info: info.file_size)
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 :][:4])
    first = member.header_offset + 30 + name_len + extra_len  # the tensor's first byte
    length = min(20_000, member.file_size // 2) // 4 * 4
    start = first + member.file_size // 4 // 4 * 4
    data[start : start + length] = b"\xde\xad\xbe\xef" * (length // 4)
    run = out / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_bytes((path.parent.parent / "config.yaml").read_bytes())
    bad = run / "checkpoints" / "last.ckpt"
    bad.write_bytes(bytes(data))
    return bad


def last(run: Path) -> Path:
    (path,) = (run / "run").rglob("last.ckpt")
    return path


def test_every_checkpoint_of_a_fit_carries_its_sha256(run):
    paths = sorted((run / "run").rglob("*.ckpt"))
    assert len(paths) == 2  # last.ckpt and ModelCheckpoint's best by val/loss
    for path in paths:
        assert CHECKSUM_TAG in path.read_bytes()[-100:]
        assert verify_checkpoint(path) is True


def one_line(monkeypatch, capsys, *args) -> str:
    monkeypatch.setattr(sys, "argv", [str(a) for a in args])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    main = cli.main
    if args[0] == "python -m cpc.viz":
        from cpc.viz.script import console_main as main
    with pytest.raises(SystemExit) as info:
        main()
    message = str(info.value.code)
    assert "\n" not in message and capsys.readouterr().err == ""
    return message


def test_a_damaged_checkpoint_is_refused_in_one_line_on_every_load_path(
    run, tmp_path, monkeypatch, capsys
):
    bad = damaged_copy(last(run), tmp_path / "copy")
    assert torch.load(bad, weights_only=True)["global_step"] == 2  # torch sees nothing wrong
    damaged = f"{bad} is damaged: its bytes do not match the sha256 written with it"
    fit = quick_fit_args(run / "images", tmp_path / "resumed", "--trainer.max_epochs=2")
    for prog, *args in (
        ["cpc", *fit, f"--ckpt_path={bad}"],
        ["cpc", "eval", f"--ckpt_path={bad}"],
        ["python -m cpc.viz", f"--ckpt_path={bad}", f"--out={tmp_path / 'figures'}"],
    ):
        message = one_line(monkeypatch, capsys, prog, *args)
        assert message.startswith(f"{prog}: error: {damaged}"), message
        assert "use an intact copy, or an earlier checkpoint" in message
    assert not (tmp_path / "resumed").exists() and not (tmp_path / "figures").exists()
    with pytest.raises(ValueError, match="is damaged"):
        load_encoder(bad)
    with pytest.raises(ValueError, match="is damaged"):  # Lightning's own load, resume included
        AtomicCheckpointIO().load_checkpoint(bad)


def test_a_checkpoint_without_a_sha256_still_loads(run, tmp_path):
    """An older checkpoint (the zip comment removed, its length set back to 0) loads."""
    data = last(run).read_bytes()
    comment = len(CHECKSUM_TAG) + 64
    old = tmp_path / "old.ckpt"
    old.write_bytes(data[: -comment - 2] + struct.pack("<H", 0))
    assert verify_checkpoint(old) is False
    assert check_checkpoint(old)["global_step"] == 2
    images = torch.rand(2, 1, 28, 28)
    assert torch.allclose(load_encoder(old)(images), load_encoder(last(run))(images))
