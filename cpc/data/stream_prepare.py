"""Write an image folder or a built-in dataset once as litdata chunks, for streaming.

::

    python -m cpc.data.prepare stream --src data/photos --out data/photos_stream --size 96
    python -m cpc.data.prepare stream --src fashion_mnist --out data/fmnist_stream

:class:`cpc.data.StreamingDataModule` then reads ``--out`` (or a copy of it in object storage).
Each sample is ``{"image": ..., "label": int}``:

- encoded (default): JPEG/PNG bytes, decoded in the training loader's workers. A JPEG or PNG
  file is kept byte for byte unless ``--size`` asks to shrink it (then its shorter side is
  resized to ``size`` and it is re-encoded: JPEG quality 95 for JPEGs, PNG otherwise); other
  formats and modes become PNG. Small on disk; costs a decode per image and epoch.
- ``--raw``: uint8 tensors ``(C, size, size)`` (shorter side resized, center-cropped): no decode
  at training time, several times larger on disk; needs ``--size`` for folders.

A folder's images are all image files under ``--src`` (recursively); an image inside a
sub-folder is labelled with that top-level folder's index among the sorted sub-folders, one
directly in ``--src`` gets ``-1`` (pretraining ignores labels). A built-in dataset writes its
pretraining split (:meth:`~cpc.data.ImageDataModule.dataset` ``"pretrain"``: the train split
minus the default validation images, STL-10 with its unlabeled images).

Unreadable files are skipped with one warning that counts them. Images are written in parts
(5000 by default), each recorded in ``--out/cpc_prepare.json`` once complete. Interrupted
(Ctrl-C, a killed job)? Run the same command again: it continues with the first incomplete
part. A finished ``--out`` is left alone (delete it to redo); other settings are refused.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.io import encode_png

from cpc.data.catalog import registry
from cpc.data.datasets import DatasetNotFoundError
from cpc.data.fetch import fetch_files

log = logging.getLogger(__name__)

#: settings of a preparation, kept in ``--out`` to refuse resuming it with other ones
SETTINGS_FILE = "cpc_prepare.json"
KEEP_FORMATS = ("JPEG", "PNG")  # stored as they are (torchvision.io decodes them)


def list_images(src: str | os.PathLike) -> tuple[list[list], list[str]]:
    """Image files under ``src``, sorted: ``([[path, label], ...], class_names)``; label -1 for
    an image directly in ``src``, else the index of its top-level sub-folder. Lists, not
    tuples, and absolute paths: litdata compares them with its checkpoint (JSON) to resume."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise DatasetNotFoundError(f"image folder {src} does not exist")
    files = sorted(
        p.relative_to(src)
        for p in src.rglob("*")
        if p.suffix.lower() in IMG_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
        and p.is_file()
    )
    if not files:
        ext = ", ".join(IMG_EXTENSIONS[:4])
        raise DatasetNotFoundError(f"no image files ({ext}, ...) under {src}")
    classes = sorted({p.parts[0] for p in files if len(p.parts) > 1})
    items = [[str(src / p), classes.index(p.parts[0]) if len(p.parts) > 1 else -1] for p in files]
    return items, classes


def encode_file(
    item: list, size: int | None, raw: bool, channels: int | None
) -> dict[str, Any] | None:
    """``[path, label]`` -> a sample (see the module docstring); None if it cannot be decoded."""
    path, label = item
    try:
        with Image.open(path) as img:
            img.load()
            fmt, mode = img.format, img.mode
            small = size is None or min(img.size) <= size
            if not raw and small and fmt in KEEP_FORMATS and mode in ("RGB", "L"):
                return {"image": Path(path).read_bytes(), "label": label}
            target = {1: "L", 3: "RGB"}.get(channels or 0, "L" if mode == "L" else "RGB")
            img = img.convert(target)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if raw:
        return {"image": _resize_crop(F.pil_to_tensor(img), size), "label": label}
    if not small:
        img = F.resize(img, size)  # shorter side -> size, aspect kept
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95) if fmt == "JPEG" else img.save(buf, format="PNG")
    return {"image": buf.getvalue(), "label": label}


def encode_tensor(
    index: int, dataset: torch.utils.data.Dataset, size: int | None, raw: bool
) -> dict[str, Any]:
    """Sample ``index`` of an in-memory dataset (``(C, H, W)`` uint8, label) -> a sample."""
    image, label = dataset[index]
    if size is not None:
        image = _resize_crop(image, size)
    stored = image.contiguous() if raw else encode_png(image).numpy().tobytes()
    return {"image": stored, "label": int(label)}


def _resize_crop(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, S, S)``: shorter side resized to S, center-cropped."""
    if size is None or tuple(image.shape[-2:]) == (size, size):
        return image
    return F.center_crop(F.resize(image, size, antialias=True), [size, size])


def prepare_stream(
    src: str,
    out: str,
    size: int | None = None,
    raw: bool = False,
    channels: int | None = None,
    workers: int | None = None,
    root: str = "data",
    chunk_bytes: str = "64MB",
    part_size: int = 5000,
    progress: bool = True,
) -> int:
    """Write ``src`` (an image folder or a built-in dataset's name) as litdata chunks in ``out``.

    The images go in parts of ``part_size``, each appended to ``out`` by litdata's
    ``optimize`` and recorded in ``out/cpc_prepare.json`` once complete: a rerun of the same
    command continues with the first incomplete part (its stray chunks are deleted first).

    Args:
        src: a folder of images (class sub-folders optional) or ``fashion_mnist``, ``mnist``,
            ``cifar10``, ``stl10`` (read from ``root``, fetched if missing).
        out: a local folder (copy it to object storage afterwards if you like).
        size: shorter side of the stored images (None: as they are); with ``raw``, also
            center-cropped square.
        raw: store uint8 tensors instead of encoded bytes.
        channels: 1 or 3 to convert re-encoded and raw images (None: RGB, or gray for gray
            images).
        workers: processes writing chunks (None: all CPUs).
        root: data folder of the built-in datasets.
        chunk_bytes: target size of one chunk file.
        part_size: images per part: the work a rerun may have to redo.
        progress: show a progress bar.

    Returns:
        The number of images written.

    Raises:
        ValueError: bad options, or ``out`` holds something else than this preparation.
        DatasetNotFoundError: no images, or none readable.
    """
    from litdata import optimize
    from tqdm.auto import tqdm

    if (raw and size is None and src not in registry()) or (size is not None and size < 1):
        raise ValueError(f"--raw needs --size >= 1 for an image folder, got {size}")
    if channels not in (None, 1, 3) or part_size < 1:
        raise ValueError(f"need channels 1 or 3 and part_size >= 1, got {channels}, {part_size}")
    if "://" in out:
        raise ValueError(f"--out must be a local folder, got {out}: prepare locally, then copy it")
    items, fn, classes = _inputs(src, size, raw, channels, root)
    settings = {"src": src, "size": size, "raw": raw, "channels": channels,
                "images": len(items), "part_size": part_size, "classes": classes}  # fmt: skip
    folder = Path(out)
    done = _parts_done(folder, settings)
    starts = range(done * part_size, len(items), part_size)
    folder.mkdir(parents=True, exist_ok=True)
    _drop_stray_chunks(folder)
    with tqdm(total=len(items), initial=starts.start, unit="img", disable=not progress) as bar:
        for k, start in enumerate(starts, done):
            part = items[start : start + part_size]
            optimize(
                fn,
                part,
                output_dir=str(folder.resolve()),
                chunk_bytes=chunk_bytes,
                num_workers=max(1, min(workers or os.cpu_count() or 1, len(part))),
                mode="append",  # after the parts written so far
                start_method="fork" if sys.platform == "linux" else "spawn",
                verbose=False,
            )
            _write_json(folder / SETTINGS_FILE, {**settings, "parts_done": k + 1})
            bar.update(len(part))
    return _report(folder, len(items), src)


def _inputs(src: str, size: int | None, raw: bool, channels: int | None, root: str):
    """``(items, fn, class_names)`` for litdata's ``optimize(fn, items)``."""
    known = registry()
    if src not in known:
        items, classes = list_images(src)
        return items, partial(encode_file, size=size, raw=raw, channels=channels), classes
    fetch_files(known[src], root, allow_apt=False, allow_download=True)
    module = known[src](root=root)
    dataset = module.dataset("pretrain")
    fn = partial(encode_tensor, dataset=dataset, size=size, raw=raw)
    return list(range(len(dataset))), fn, module.class_names


def _parts_done(folder: Path, settings: dict[str, Any]) -> int:
    """Parts of this preparation already in ``folder``: 0 for an absent or empty folder."""
    if not folder.exists() or not any(folder.iterdir()):
        return 0
    marker = folder / SETTINGS_FILE
    if not marker.is_file():
        raise ValueError(f"{folder} is not empty and holds no preparation: choose another --out")
    saved = json.loads(marker.read_text())
    done = saved.pop("parts_done", 0)
    if saved != settings:
        raise ValueError(
            f"{folder} holds a preparation with other settings or inputs ({marker}): rerun it "
            f"with the same options, or delete {folder} to start over"
        )
    if done * settings["part_size"] < settings["images"]:
        log.info("continuing the preparation in %s after %d parts", folder, done)
    else:
        log.info("%s is prepared already: delete it to prepare again", folder)
    return done


def _drop_stray_chunks(folder: Path) -> None:
    """Delete chunk files an interrupted part left behind (not in ``index.json``)."""
    index = folder / "index.json"
    listed = (
        {c["filename"] for c in json.loads(index.read_text())["chunks"]}
        if index.is_file()
        else set()
    )
    for chunk in folder.glob("chunk-*.bin"):
        if chunk.name not in listed:
            chunk.unlink()


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a killed write leaves the old file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def _num_written(folder: Path) -> int:
    index = json.loads((folder / "index.json").read_text())
    return sum(chunk["chunk_size"] for chunk in index["chunks"])


def _report(folder: Path, num_inputs: int, src: str) -> int:
    """Images written; one warning counting the skipped (unreadable) ones."""
    n = _num_written(folder) if (folder / "index.json").is_file() else 0
    if n == 0:
        raise DatasetNotFoundError(f"all {num_inputs} image files under {src} are unreadable")
    if n < num_inputs:
        skipped = num_inputs - n
        warnings.warn(f"skipped {skipped} unreadable images of {num_inputs} in {src}", stacklevel=3)
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m cpc.data.prepare stream --src FOLDER_OR_NAME --out DIR [--size S] [--raw]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cpc.data.prepare stream",
        description="Write images as litdata chunks for cpc.data.StreamingDataModule "
        "(see data/README.md). Rerun the same command to continue an interrupted run.",
    )
    names = ", ".join(sorted(registry()))
    parser.add_argument("--src", required=True, help=f"image folder, or one of {names}")
    parser.add_argument("--out", required=True, help="output folder (local)")
    parser.add_argument("--size", type=int, default=None, help="shorter side of stored images")
    parser.add_argument("--raw", action="store_true", help="store uint8 tensors, not JPEG/PNG")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None)
    parser.add_argument("--workers", type=int, default=None, help="default: all CPUs")
    parser.add_argument("--root", default="data", help="data folder of the built-in datasets")
    parser.add_argument("--chunk-bytes", default="64MB", help="size of one chunk file")
    parser.add_argument("--part-size", type=int, default=5000, help="images a rerun may redo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        n = prepare_stream(
            args.src, args.out, args.size, args.raw, args.channels, args.workers, args.root,
            args.chunk_bytes, args.part_size,
        )  # fmt: skip
    except (ValueError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{n} images in {args.out}: data.input_dir of cpc.data.StreamingDataModule")
    return 0
