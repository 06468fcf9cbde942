"""``python -m cpc.data.prepare``: put a dataset's files where torchvision expects them under
``root`` (:mod:`cpc.data.fetch`), or write images as litdata chunks
(:mod:`cpc.data.stream_prepare`).

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
import logging
import sys
from pathlib import Path

from cpc.data.catalog import TorchvisionDataModule, registry
from cpc.data.datasets import DatasetNotFoundError
from cpc.data.fetch import fetch_files
from cpc.data.stream_prepare import main as stream_main

Dataset = type[TorchvisionDataModule]


def dataset_class(name: str | Dataset) -> Dataset:
    """The data module class of a dataset name (``fashion_mnist``, ...) or the class itself."""
    if isinstance(name, type):
        return name
    known = registry()
    if name not in known:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(known)}")
    return known[name]


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
    return fetch_files(dataset_class(dataset), root, allow_apt, allow_download)


def main(argv: list[str] | None = None) -> int:
    """``python -m cpc.data.prepare NAME [--root data] [--no-apt] [--no-download]``, or
    ``python -m cpc.data.prepare stream ...`` (:func:`cpc.data.stream_prepare.main`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stream"]:
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
