"""Checks of a ``cpc fit`` config before anything is built or written, each a one-line error.

A run that cannot work should fail in a second, saying what to change, not after a 40-line
traceback from deep inside Lightning, and without leaving a run folder behind. Called by
:class:`cpc.cli.CPCLightningCLI` on the parsed config; :func:`check_checkpoint` also by
``cpc eval``.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

#: ``--ckpt_path`` values Lightning resolves itself (not files)
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


def check_fit(trainer: Any, ckpt_path: str | None) -> dict[str, Any] | None:
    """Every check below, on the ``trainer`` section of a fit's config and its ``ckpt_path``.

    Returns:
        The checkpoint at ``ckpt_path`` (:func:`check_checkpoint`), None without one or for a
        path Lightning resolves itself (``last``, ``best``, ...).

    Raises:
        ValueError: naming the option to change.
    """
    check_accelerator(trainer.accelerator)
    check_precision(trainer.precision, trainer.accelerator)
    check_writable(trainer.default_root_dir)
    if ckpt_path is None or ckpt_path in SPECIAL_CKPT_PATHS:
        return None
    return check_checkpoint(ckpt_path)


def gpu_available() -> bool:
    """A CUDA or Apple (MPS) GPU that Lightning's ``accelerator gpu`` can use."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def check_accelerator(accelerator: Any) -> None:
    """``gpu``/``cuda``/``mps`` without one (Lightning: "No supported gpu backend found!")."""
    name = str(accelerator).lower()
    wanted = {
        "gpu": gpu_available,
        "cuda": torch.cuda.is_available,
        "mps": torch.backends.mps.is_available,
    }
    if name in wanted and not wanted[name]():
        raise ValueError(
            f"trainer.accelerator {name}: no GPU is visible to torch on this machine: use "
            "--trainer.accelerator cpu (or auto, which takes a GPU when there is one)"
        )


def check_precision(precision: Any, accelerator: Any) -> None:
    """``16-mixed`` on the CPU is refused (see below).

    Lightning has no float16 autocast on the CPU and silently runs ``bf16-mixed`` instead,
    which on CPUs without AVX-512-bf16/AMX is many times slower than float32 (18x on the AVX2
    EPYC of the README). A user asking for 16-bit wants speed; refusing says how to get it.
    """
    on_cpu = str(accelerator).lower() == "cpu" or (
        str(accelerator).lower() in ("auto", "none") and not gpu_available()
    )
    if on_cpu and str(precision) in ("16", "16-mixed"):
        raise ValueError(
            f"trainer.precision {precision} needs a GPU (on the CPU Lightning would switch to "
            "bf16-mixed): use --trainer.precision 32, or bf16-mixed on a CPU with "
            "AVX-512-bf16/AMX"
        )


def check_writable(
    root: str | os.PathLike | None, option: str = "trainer.default_root_dir"
) -> None:
    """``trainer.default_root_dir`` (default: the current folder; or the folder of
    ``option``) can hold a run folder.

    Nothing is created: a temporary file is written and removed in the nearest folder that
    exists, so a read-only or full file system, a missing permission or a file in the way
    fails here.
    """
    path = Path(root or ".").absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"{option} {root}: {existing} is a file, not a folder: choose another {option}"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(
            f"{option} {root}: cannot write in {existing} ({err.strerror}): "
            f"choose a writable {option}"
        ) from err


def check_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``path`` is a Lightning checkpoint that loads: a torch zip archive holding a dict with
    ``state_dict`` and ``pytorch-lightning_version``, of tensors and plain values only.

    Read as Lightning and ``cpc fit --ckpt_path`` read it, ``weights_only`` (unpickling runs no
    code a file could carry) and memory-mapped (tensors are read when used), after its sha256
    (:func:`cpc.run.checkpoint_files.verify_checkpoint`) is checked. torch's own errors
    on a truncated or foreign file are tracebacks ending in a hint to pass
    ``weights_only=False``, which would not help.

    Returns:
        The checkpoint (its tensors memory-mapped).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint, or a corrupt or damaged one.
    """
    from cpc.run.checkpoint_files import verify_checkpoint  # imports Lightning

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(not_found(path))
    hint = "pass a .ckpt written by cpc fit (e.g. <run folder>/checkpoints/last.ckpt)"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a checkpoint (truncated, or another format): {hint}")
    verify_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if unsafe:  # a pickled object, whose loading could run any code: not loaded
            raise ValueError(
                f"{path} holds a Python object ({unsafe[1]}), which no checkpoint of cpc fit "
                f"holds: {hint}"
            ) from None
        raise ValueError(f"{path} is a corrupt checkpoint ({one_word(err)}): {hint}") from err
    if not isinstance(checkpoint, dict) or not {"state_dict", "pytorch-lightning_version"} <= set(
        checkpoint
    ):
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict): {hint}")
    return checkpoint


def not_found(path: Path) -> str:
    """Why there is no checkpoint at ``path``: the file looked for, and when its run folder
    (``<run>/checkpoints/<name>.ckpt``) exists without any checkpoint, that the run stopped
    before its first save."""
    line = f"checkpoint not found: {path}"
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    a_run = (run / "config.yaml").is_file() or (run / "hparams.yaml").is_file()
    if a_run and not any(run.rglob("*.ckpt")):
        return (
            f"{line}: the run in {run} stopped before its first save (last.ckpt is "
            "written every --checkpoint.every_n_train_steps steps, on SIGTERM and Ctrl-C): "
            "train it again, with a shorter interval if it is stopped early"
        )
    return f"{line}: pass a .ckpt written by cpc fit (e.g. <run folder>/checkpoints/last.ckpt)"


def one_word(err: BaseException) -> str:
    """``RuntimeError: PytorchStreamReader failed ...`` -> its first line, short."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:120]}" if text else type(err).__name__
