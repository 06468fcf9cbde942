"""Checkpoint files that survive a kill or a full disk, and prove they are whole.

Lightning's :class:`~lightning.pytorch.plugins.io.TorchCheckpointIO` writes through fsspec's
temp-dir transaction, which ends in a *copy* when the temp dir is on another filesystem than
the run folder: a kill during that copy leaves a truncated ``last.ckpt`` and the previous one
gone. :class:`AtomicCheckpointIO` (installed by ``cpc fit`` as ``trainer.plugins``) writes to a
temp file in the checkpoint's own folder, fsyncs it, then renames it over the old file
(``os.replace``, atomic within one filesystem), and fsyncs the folder.

A checkpoint proves it is whole: :class:`AtomicCheckpointIO` writes the sha256 of the file into
the zip archive's comment (the last bytes of the file, which torch ignores), and every load
(:func:`verify_checkpoint`: ``cpc fit --ckpt_path``, ``cpc eval``, :func:`cpc.load_encoder`,
``python -m cpc.viz``) recomputes it, so bytes damaged on a disk or in a copy are refused in
one line instead of loading as weights near 1e30. A checkpoint without the comment (written
before it existed, or by another tool) loads unchecked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

#: the zip comment of a sealed checkpoint: this tag, then the sha256 (hex) of every byte of the
#: file before the comment's 2-byte length field
CHECKSUM_TAG = b"cpc-sha256:"
_COMMENT = len(CHECKSUM_TAG) + 64
_END = b"PK\x05\x06"  # the zip's end-of-central-directory record: 22 bytes, then the comment


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one at that path is intact.

    Keeps the failed write's ``errno`` and ``strerror`` (``cpc``'s one-line error names a full
    or read-only disk from them) and the checkpoint's path as ``filename``.
    """

    def __str__(self) -> str:
        return (
            f"could not write checkpoint {self.filename} ({self.strerror}); the previous one "
            "there is kept: free space or choose another trainer.default_root_dir"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<folder>/.<name>.<random>.tmp``, fsync, ``os.replace`` onto ``path``.

    Until the rename, ``path`` holds the previous complete checkpoint (or nothing); after it,
    the new complete one (and temp files a killed writer left are removed). On any error
    (``ENOSPC``, a kill signal turned into an exception, ...) the temp file is removed, and an
    ``OSError`` (also when torch reports it as ``RuntimeError ... unexpected pos``, as on a
    full disk) becomes a one-line :class:`CheckpointWriteError`. The file is sealed with
    its sha256 (:func:`seal`) before the rename, and checked (:func:`verify_checkpoint`) when
    Lightning loads it back.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w+b") as file:
                _save(checkpoint, file)
                seal(file)
                os.fsync(file.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; other outputs follow umask
            os.replace(tmp, path)
        except BaseException as err:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            if isinstance(err, OSError):
                reason = err.strerror or str(err)
                raise CheckpointWriteError(err.errno, reason, err.filename or str(path)) from err
            raise
        _fsync_folder(path.parent)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)

    def load_checkpoint(self, path: str | os.PathLike, *args: Any, **kwargs: Any) -> dict:
        """Lightning's load, after :func:`verify_checkpoint` (a damaged file is refused)."""
        if os.path.isfile(path):  # a local file (Lightning also reads fsspec URLs)
            verify_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)


class _Recorder:
    """``file``'s ``write`` and ``flush``, keeping the OSError a failed write raised (torch
    reports it as ``RuntimeError: ... unexpected pos``, without the errno)."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def _save(checkpoint: dict[str, Any], file: Any) -> None:
    """``torch.save(checkpoint, file)``; a write that failed raises its OSError."""
    recorder = _Recorder(file)
    try:
        torch.save(checkpoint, recorder)
    except RuntimeError as err:
        if recorder.error is None:
            raise
        raise recorder.error from err


class DamagedCheckpointError(ValueError):
    """A checkpoint whose bytes differ from those written (its sha256 does not match)."""


def seal(file: Any) -> None:
    """Write the sha256 of the zip archive that ``file`` (open ``w+b``, just written by
    ``torch.save``) holds into its comment; an archive that already has a comment is left."""
    file.flush()
    size = file.seek(0, os.SEEK_END)
    file.seek(size - 22)
    if size < 22 or file.read(22)[:4] != _END:  # not torch's archive layout: nothing to seal
        return
    digest = _sha256(file, size - 2)
    file.seek(size - 2)
    file.write(struct.pack("<H", _COMMENT) + CHECKSUM_TAG + digest.encode())
    file.flush()


def verify_checkpoint(path: str | os.PathLike) -> bool:
    """Recompute the sha256 :func:`seal` wrote into the checkpoint at ``path``.

    Returns:
        True when it matches, False when the file carries none (an older checkpoint).

    Raises:
        DamagedCheckpointError: in one line naming the file and what to do, when it differs.
    """
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size < 22 + _COMMENT:
            return False
        file.seek(size - 22 - _COMMENT)
        tail = file.read()
        sealed = tail[:4] == _END and tail[20:22] == struct.pack("<H", _COMMENT)
        if not (sealed and tail[22:].startswith(CHECKSUM_TAG)):
            return False
        written = tail[22 + len(CHECKSUM_TAG) :].decode("ascii", "replace")
        if _sha256(file, size - 2 - _COMMENT) == written:
            return True
    raise DamagedCheckpointError(
        f"{path} is damaged: its bytes do not match the sha256 written with it (a disk or copy "
        "error): use an intact copy, or an earlier checkpoint (e.g. the best by val/loss in "
        "the same folder)"
    )


def _sha256(file: Any, size: int) -> str:
    """The sha256 (hex) of the first ``size`` bytes of ``file``."""
    digest, left = hashlib.sha256(), size
    file.seek(0)
    while left > 0:
        chunk = file.read(min(left, 1 << 20))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
