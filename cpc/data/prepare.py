"""Fetching: put a dataset's files where torchvision expects them under ``root``.

What to fetch is the data module class's (:mod:`cpc.data.catalog`): its ``folder`` and
``files``, its ``fetch`` (torchvision's download) and its Debian package.

Order, stopping at the first that works:

1. the files are already there: nothing to do;
2. a Debian package's copy is installed (the class's ``debian_dir``, e.g.
   ``/usr/share/datasets/fashion-mnist``): gunzip it;
3. only with ``allow_apt`` (the command line sets it; library code never does): as root,
   ``apt-get install -y dataset-fashion-mnist``, then 2;
4. ``allow_download``: torchvision's download (needs the internet);
5. else :class:`~cpc.data.datasets.DatasetNotFoundError`, one line saying what to run.

Command line::

    python -m cpc.data.prepare fashion_mnist --root data
    python -m cpc.data.prepare stream --src FOLDER --out DIR   # litdata chunks, see stream_prepare
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cpc.data.catalog import TorchvisionDataModule, registry
from cpc.data.datasets import DatasetNotFoundError

log = logging.getLogger(__name__)

Dataset = type[TorchvisionDataModule]


def dataset_class(name: str | Dataset) -> Dataset:
    """The data module class of a dataset name (``fashion_mnist``, ...) or the class itself."""
    if isinstance(name, type):
        return name
    known = registry()
    if name not in known:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(known)}")
    return known[name]


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


def prepare(
    dataset: str | Dataset, root: str = "data", allow_apt: bool = False, allow_download: bool = True
) -> Path:
    """Make a dataset's files exist under ``root`` (see the module docstring for the order).

    Args:
        dataset: a name (``fashion_mnist``, ``mnist``, ``cifar10``, ``stl10``, or any other
            :class:`~cpc.data.catalog.TorchvisionDataModule`'s) or the class itself.
        root: data folder, as given to the datamodule.
        allow_apt: may run ``apt-get install`` of the dataset's Debian package (root only).
        allow_download: may download with torchvision.

    Returns:
        The folder holding the files.

    Raises:
        DatasetNotFoundError: nothing worked; the message says what to run.
    """
    dataset = dataset_class(dataset)
    folder = Path(root) / dataset.folder
    if not missing_files(dataset, root) or copy_from_debian(dataset, root):
        return folder
    apt_ok = allow_apt and dataset.debian_package and apt_install(dataset.debian_package)
    if apt_ok and copy_from_debian(dataset, root):
        return folder
    if allow_download:
        return download(dataset, root)
    raise not_found_error(dataset, root, "no local copy and download not allowed")


def main(argv: list[str] | None = None) -> int:
    """``python -m cpc.data.prepare NAME [--root data] [--no-apt] [--no-download]``, or
    ``python -m cpc.data.prepare stream ...`` (:func:`cpc.data.stream_prepare.main`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stream"]:
        from cpc.data.stream_prepare import main as stream_main

        return stream_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m cpc.data.prepare",
        description="Put a dataset's files under --root. `python -m cpc.data.prepare stream "
        "--help`: write images as litdata chunks for streaming.",
    )
    parser.add_argument("name", choices=sorted(registry()), help="dataset to prepare")
    parser.add_argument("--root", default="data", help="data folder (default: data)")
    parser.add_argument("--no-apt", action="store_true", help="never run apt-get install")
    parser.add_argument("--no-download", action="store_true", help="never download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = prepare(args.name, args.root, not args.no_apt, not args.no_download)
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{dataset_class(args.name).title} is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
