"""Putting a dataset's files where torchvision expects them under ``root``, for a data module
class of :mod:`cpc.data.catalog` (its ``folder``, ``files``, ``fetch`` and Debian package), in
the order of :func:`fetch_files`."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
from pathlib import Path

from cpc.data.datasets import DatasetNotFoundError

log = logging.getLogger(__name__)

#: a :class:`cpc.data.catalog.TorchvisionDataModule` subclass
Dataset = type


def missing_files(dataset: Dataset, root: str | os.PathLike) -> list[str]:
    """Files of ``dataset`` that torchvision would read but are not under ``root``."""
    folder = Path(root) / dataset.folder
    return [f for f in dataset.files if not (folder / f).is_file()]


def not_found_error(dataset: Dataset, root: str | os.PathLike, reason: str) -> DatasetNotFoundError:
    """The one-line error for a missing dataset: what is missing, where, and what to run."""
    missing = missing_files(dataset, root) or list(dataset.files)
    more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
    fix = f"python -m cpc.data.prepare {dataset.name} --root {root}"
    if dataset.debian_package:
        apt = f"apt-get install {dataset.debian_package} && {fix}"
        how = f"run `{apt}`, or connect to the internet and run `{fix}`"
    else:
        how = (
            f"connect to the internet and run `{fix}`, or copy the files there (see data/README.md)"
        )
    where = Path(root) / dataset.folder
    return DatasetNotFoundError(
        f"{dataset.title} not found: missing {missing[0]}{more} in {where} ({reason}); {how}"
    )


def download(dataset: Dataset, root: str | os.PathLike) -> Path:
    """Download ``dataset`` with torchvision unless its files are already there.

    Returns:
        The folder holding the files.

    Raises:
        DatasetNotFoundError: the download failed (e.g. offline); torchvision's traceback is
            replaced by one line saying what to run.
    """
    root = str(root)
    if missing_files(dataset, root):
        try:
            dataset.fetch(root)
        except Exception as err:  # any failure (URLError, md5 mismatch, disk) -> one clear line
            lines = str(err).strip().splitlines() or [type(err).__name__]
            reason = f"download failed: {lines[-1][:100]}"  # torchvision's last line: the cause
            raise not_found_error(dataset, root, reason) from None
        if missing_files(dataset, root):
            raise not_found_error(dataset, root, "download finished but files are still missing")
    return Path(root) / dataset.folder


def copy_from_debian(dataset: Dataset, root: str | os.PathLike) -> bool:
    """Gunzip the Debian package's files of ``dataset`` into torchvision's folder under ``root``.

    Returns:
        True if all files are now there; False if there is no Debian copy of them.
    """
    source = dataset.debian_dir
    if source is None:
        return False
    gzipped = [Path(source) / f"{f}.gz" for f in missing_files(dataset, root)]
    if not all(p.is_file() for p in gzipped):
        return False
    folder = Path(root) / dataset.folder
    folder.mkdir(parents=True, exist_ok=True)
    for src in gzipped:
        dst = folder / src.stem
        tmp = dst.with_suffix(".part")  # rename at the end: a killed copy leaves no half file
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(dst)
    log.info("copied %s from %s to %s", dataset.name, source, folder)
    return not missing_files(dataset, root)


def apt_install(package: str) -> bool:
    """``apt-get install -y package`` (after ``apt-get update`` if the first try fails).

    Returns:
        True on success; False without apt-get, when not root, or when apt fails.
    """
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        if subprocess.run(install, check=False, capture_output=True).returncode == 0:
            return True
    return False


def fetch_files(
    dataset: Dataset, root: str | os.PathLike, allow_apt: bool = False, allow_download: bool = True
) -> Path:
    """Make ``dataset``'s files exist under ``root``: already there, else the Debian copy, else
    (``allow_apt``) apt-get then the Debian copy, else (``allow_download``) torchvision's download,
    else :class:`~cpc.data.datasets.DatasetNotFoundError`. Returns the folder holding them."""
    folder = Path(root) / dataset.folder
    if not missing_files(dataset, root) or copy_from_debian(dataset, root):
        return folder
    apt_ok = allow_apt and dataset.debian_package and apt_install(dataset.debian_package)
    if apt_ok and copy_from_debian(dataset, root):
        return folder
    if allow_download:
        return download(dataset, root)
    raise not_found_error(dataset, root, "no local copy and download not allowed")
