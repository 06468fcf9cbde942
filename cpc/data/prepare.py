"""Put a dataset's files where torchvision expects them under ``root``.

Order, stopping at the first that works:

1. the files are already there: nothing to do;
2. a Debian package's copy is installed (``/usr/share/datasets/fashion-mnist``): gunzip it;
3. only with ``allow_apt`` (the command line sets it; library code never does): as root,
   ``apt-get install -y dataset-fashion-mnist``, then 2;
4. ``allow_download``: torchvision's download (needs the internet);
5. else :class:`~cpc.data.datasets.DatasetNotFoundError`, one line saying what to run.

Command line::

    python -m cpc.data.prepare fashion_mnist --root data
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

from cpc.data.datasets import (
    DATASETS,
    DatasetNotFoundError,
    download,
    missing_files,
    not_found_error,
)

log = logging.getLogger(__name__)

#: Where Debian packages install each dataset (gzipped idx files), by dataset name.
DEBIAN_DIRS: dict[str, Path] = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}


def copy_from_debian(name: str, root: str | os.PathLike, source: Path | None = None) -> bool:
    """Gunzip the Debian package's files of ``name`` into torchvision's folder under ``root``.

    Returns:
        True if all files are now there; False if there is no Debian copy of them.
    """
    source = source or DEBIAN_DIRS.get(name)
    if source is None:
        return False
    gzipped = [source / f"{f}.gz" for f in missing_files(name, root)]
    if not all(p.is_file() for p in gzipped):
        return False
    folder = Path(root) / DATASETS[name].folder
    folder.mkdir(parents=True, exist_ok=True)
    for src in gzipped:
        dst = folder / src.stem
        tmp = dst.with_suffix(".part")  # rename at the end: a killed copy leaves no half file
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(dst)
    log.info("copied %s from %s to %s", name, source, folder)
    return not missing_files(name, root)


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
    name: str, root: str = "data", allow_apt: bool = False, allow_download: bool = True
) -> Path:
    """Make dataset ``name``'s files exist under ``root`` (see the module docstring for the order).

    Args:
        name: one of ``fashion_mnist``, ``mnist``, ``cifar10``, ``stl10``.
        root: data folder, as given to the datamodule.
        allow_apt: may run ``apt-get install`` of the dataset's Debian package (root only).
        allow_download: may download with torchvision.

    Returns:
        The folder holding the files.

    Raises:
        DatasetNotFoundError: nothing worked; the message says what to run.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    info = DATASETS[name]
    folder = Path(root) / info.folder
    if not missing_files(name, root) or copy_from_debian(name, root):
        return folder
    apt_ok = allow_apt and info.debian_package and apt_install(info.debian_package)
    if apt_ok and copy_from_debian(name, root):
        return folder
    if allow_download:
        return download(name, root)
    raise not_found_error(name, root, "no local copy and download not allowed")


def prepare_fashion_mnist(root: str = "data", allow_apt: bool = False) -> Path:
    """Fashion-MNIST under ``root/FashionMNIST/raw`` (Debian copy, apt, then download)."""
    return prepare("fashion_mnist", root, allow_apt=allow_apt)


def prepare_mnist(root: str = "data") -> Path:
    """MNIST under ``root/MNIST/raw`` (download)."""
    return prepare("mnist", root)


def prepare_cifar10(root: str = "data") -> Path:
    """CIFAR-10 under ``root/cifar-10-batches-py`` (download, 170 MB)."""
    return prepare("cifar10", root)


def prepare_stl10(root: str = "data") -> Path:
    """STL-10 under ``root/stl10_binary`` (download, 2.6 GB)."""
    return prepare("stl10", root)


def main(argv: list[str] | None = None) -> int:
    """``python -m cpc.data.prepare NAME [--root data] [--no-apt] [--no-download]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cpc.data.prepare", description="Put a dataset's files under --root."
    )
    parser.add_argument("name", choices=sorted(DATASETS), help="dataset to prepare")
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
    print(f"{DATASETS[args.name].title} is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
