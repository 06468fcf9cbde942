"""Checkpoints that survive a kill: written often, and atomically.

:class:`PeriodicCheckpoint` writes ``last.ckpt`` every ``every_n_train_steps`` steps or
``every_n_minutes`` from the first ones (a ModelCheckpoint that monitors ``val/loss`` saves
nothing before the first validation, and after one only when the loss improved), after every
validation and at the end of fit.

A kill or a full disk never destroys the last good checkpoint:

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
import signal
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

#: the zip comment of a sealed checkpoint: this tag, then the sha256 (hex) of every byte of the
#: file before the comment's 2-byte length field
CHECKSUM_TAG = b"cpc-sha256:"
_COMMENT = len(CHECKSUM_TAG) + 64
_END = b"PK\x05\x06"  # the zip's end-of-central-directory record: 22 bytes, then the comment


class PeriodicCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` training steps or ``every_n_minutes``,
    whichever comes first, after every validation, and at the end of fit.

    A kill loses at most that much work. With ``enable_version_counter=False`` it shares
    ``last.ckpt`` with a monitored ModelCheckpoint that also saves it (after a validation that
    improved the loss): the file is always the newest state. Under DDP every rank follows
    rank 0's clock, read every :attr:`clock_every_n_steps` steps (one broadcast then, not
    one a step), so a save by the minutes comes up to that many steps late.

    A fit stopped by SIGTERM (a cluster scheduler) or a first Ctrl-C (SIGINT, handled as
    Lightning handles SIGTERM: at the end of the running step; a second one stops at once)
    saves ``last.ckpt`` and says where in one line before the process exits.

    Args:
        dirpath: folder of ``last.ckpt``; default: the logger's ``checkpoints/``.
        every_n_train_steps: steps between saves (default 100, about a quarter of an epoch of
            ``configs/fashion_mnist.yaml``: 429 steps of 128 images).
        every_n_minutes: the most minutes of training between saves (default 10, for steps
            slower than 6 s; None: steps only), counted from the start of fit or the last save.
    """

    #: seconds of a monotonic clock (a test replaces it)
    clock = staticmethod(time.monotonic)
    #: under DDP, rank 0's clock is read (and broadcast) every this many steps only
    clock_every_n_steps = 10

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int = 100,
        every_n_minutes: float | None = 10.0,
    ) -> None:
        if every_n_train_steps < 1 or (every_n_minutes is not None and not every_n_minutes > 0):
            raise ValueError(
                "need every_n_train_steps >= 1 and every_n_minutes > 0 (or None), got "
                f"{every_n_train_steps} and {every_n_minutes}"
            )
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,
        )
        self.every_n_train_steps, self.every_n_minutes = every_n_train_steps, every_n_minutes
        self._saved_at = 0.0  # clock() at the start of fit or the last save

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved_at = self.clock()
        self._previous_sigint = _stop_gracefully_on_sigint()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if getattr(self, "_previous_sigint", None) is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A stop by signal (Lightning's SIGTERMException, raised at the end of a step) saves
        ``last.ckpt`` and prints where."""
        super().on_exception(trainer, pl_module, exception)
        stopped = isinstance(exception, SIGTERMException) and trainer.global_step > 0
        if stopped and not trainer.fast_dev_run:
            self._save_last(trainer)
            rank_zero_info(
                f"stopped by a signal at step {trainer.global_step}: saved "
                f"{self.last_model_path}; resume with --ckpt_path {self.last_model_path}"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Lightning's save every ``every_n_train_steps``, else one when the minutes are up."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        now = self.clock()
        if trainer.global_step % self.every_n_train_steps == 0:  # Lightning saved just now
            self._saved_at = now
        elif self.every_n_minutes is not None and not trainer.fast_dev_run:
            many = trainer.world_size > 1
            if many and trainer.global_step % self.clock_every_n_steps:
                return  # a collective on every step would cost more than the clock is worth
            due = now - self._saved_at >= 60 * self.every_n_minutes
            if many:  # every rank as rank 0: saving is collective
                due = trainer.strategy.broadcast(due)
            if due:
                self._save_last(trainer)
                self._saved_at = now

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save after every validation of a fit: a ModelCheckpoint that monitors ``val/loss``
        rewrites ``last.ckpt`` only when the loss improved (Lightning 2.6)."""
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and not (trainer.sanity_checking or trainer.fast_dev_run):
            self._save_last(trainer)
            self._saved_at = self.clock()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state: a fit stopped by ``max_steps`` between two saves (and past
        the last validation) would otherwise leave an older ``last.ckpt``."""
        if not trainer.fast_dev_run and trainer.global_step > 0:
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        self.last_model_path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        # weights_only given: Lightning logs "`weights_only` was not set" at every save otherwise
        trainer.save_checkpoint(self.last_model_path, weights_only=False)


def _stop_gracefully_on_sigint() -> Any:
    """Make the first SIGINT do what Lightning's SIGTERM handler does (stop at the end of the
    running step, raising SIGTERMException, every rank told); a second SIGINT gets the
    previous handler back (KeyboardInterrupt at once). Returns that previous handler, or None
    when nothing was changed (not the main thread, or no Lightning SIGTERM handler)."""
    sigterm = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(sigterm):
        return None
    previous = signal.getsignal(signal.SIGINT)

    def first_sigint(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        sigterm(signum, frame)

    signal.signal(signal.SIGINT, first_sigint)
    return previous


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
