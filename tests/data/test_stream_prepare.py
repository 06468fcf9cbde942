"""python -m cpc.data.prepare stream: image folders and built-in sets -> litdata chunks."""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset
from PIL import Image
from test_catalog import ToyDataModule

from cpc.data import prepare
from cpc.data import stream_prepare as sp
from cpc.data.datasets import DatasetNotFoundError


def write_photos(root: Path, n: int = 12, size: int = 20, start: int = 0) -> list[Path]:
    """``n`` gray PNGs whose pixels (0, 0) and (0, 1) spell their id (``start + i``)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        pixels = np.full((size, size), 128, np.uint8)
        pixels[0, 0], pixels[0, 1] = i % 256, i // 256
        paths.append(root / f"{i:05d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def stored(out: Path) -> list[dict]:
    ds = StreamingDataset(str(out))
    return [ds[i] for i in range(len(ds))]


def test_folder_keeps_png_bytes_labels_by_subfolder_and_skips_corrupt_files_once(tmp_path):
    src = tmp_path / "photos"
    files = write_photos(src / "cats", 5) + write_photos(src / "dogs", 4, start=5)
    files += write_photos(src, 3, start=9)  # directly in src: unlabelled
    (src / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "notes.txt").write_text("ignored: not an image extension")
    with pytest.warns(UserWarning, match="skipped 1 unreadable images of 13") as caught:
        n = sp.prepare_stream(str(src), str(tmp_path / "out"), workers=1, progress=False)
    assert n == 12 and len([w for w in caught if "unreadable" in str(w.message)]) == 1
    samples = stored(tmp_path / "out")
    assert sorted(bytes(s["image"]) for s in samples) == sorted(f.read_bytes() for f in files)
    assert Counter(s["label"] for s in samples) == {0: 5, 1: 4, -1: 3}


def test_size_shrinks_and_reencodes_large_images_and_raw_stores_square_tensors(tmp_path):
    src = tmp_path / "photos"
    write_photos(src, 3, size=40)
    sp.prepare_stream(str(src), str(tmp_path / "enc"), size=16, workers=1, progress=False)
    images = [Image.open(io.BytesIO(s["image"])) for s in stored(tmp_path / "enc")]
    assert all(img.size == (16, 16) and img.format == "PNG" for img in images)
    sp.prepare_stream(
        str(src), str(tmp_path / "raw"), size=16, raw=True, channels=3, progress=False
    )
    tensors = [s["image"] for s in stored(tmp_path / "raw")]
    assert all(t.dtype == torch.uint8 and t.shape == (3, 16, 16) for t in tensors)
    with pytest.raises(ValueError, match="--raw needs --size"):
        sp.prepare_stream(str(src), str(tmp_path / "bad"), raw=True)


class SmallToy(ToyDataModule):
    """The toy set of test_catalog with a val split that fits its 24 train images."""

    name = "toy_stream"

    def __init__(self, root: str = "data", batch_size: int = 256, val_size: int = 6) -> None:
        super().__init__(root, batch_size, val_size)


def test_builtin_dataset_writes_its_pretrain_split_losslessly(tmp_path):
    out = tmp_path / "out"
    args = ["stream", "--src", "toy_stream", "--root", str(tmp_path), "--out", str(out)]
    assert prepare.main(args) == 0
    module = SmallToy(root=str(tmp_path))
    pretrain = module.dataset("pretrain")
    expected = sorted(pretrain[i][0].flatten().tolist() for i in range(len(pretrain)))
    decoded = [torch.from_numpy(np.array(Image.open(io.BytesIO(s["image"])))) for s in stored(out)]
    assert len(decoded) == 18  # 24 train images minus 6 held out for validation
    got = sorted(img.permute(2, 0, 1).flatten().tolist() for img in decoded)  # HWC -> CHW
    assert got == expected


def test_interrupted_preparation_continues_without_duplicates(tmp_path, monkeypatch):
    src = tmp_path / "photos"
    files = write_photos(src, 10)
    (src / "00003x.png").write_bytes(b"corrupt")  # skipped files must not shift the resume
    encode = sp.encode_file

    def crash_in_the_third_part(item, **kwargs):
        if item[0].endswith("00007.png"):
            raise RuntimeError("killed")
        return encode(item, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(sp, "encode_file", crash_in_the_third_part)
    with pytest.raises(RuntimeError):
        sp.prepare_stream(str(src), str(out), workers=1, part_size=4, progress=False)
    assert (
        json.loads((out / sp.SETTINGS_FILE).read_text())["parts_done"] == 2
    )  # 00000-00003, 00003x-00006
    monkeypatch.setattr(sp, "encode_file", encode)
    with pytest.raises(ValueError, match="other settings"):
        sp.prepare_stream(str(src), str(out), size=8, part_size=4, progress=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert sp.prepare_stream(str(src), str(out), workers=1, part_size=4, progress=False) == 10
    assert sorted(bytes(s["image"]) for s in stored(out)) == sorted(f.read_bytes() for f in files)
    chunks = {c.name: c.stat().st_mtime_ns for c in out.glob("chunk-*.bin")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp.prepare_stream(str(src), str(out), workers=1, part_size=4, progress=False)
    assert {c.name: c.stat().st_mtime_ns for c in out.glob("chunk-*.bin")} == chunks  # untouched


def test_bad_sources_and_outputs_fail_in_one_line(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        sp.prepare_stream(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetNotFoundError, match="all 1 image files"):
        sp.prepare_stream(str(tmp_path / "junk"), str(tmp_path / "out"), progress=False)
    write_photos(tmp_path / "ok", 2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no preparation"):
        sp.prepare_stream(str(tmp_path / "ok"), str(tmp_path / "full"))
    with pytest.raises(ValueError, match="must be a local folder"):
        sp.prepare_stream(str(tmp_path / "ok"), "s3://bucket/out")
