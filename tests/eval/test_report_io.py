import json
import os

import pytest
import torch

from cpc.eval.report_io import format_report, write_report


def fake_report():
    result = {"knn": {"top1": 0.5, "top5": 1.0}, "linear": {"top1": 0.875, "top5": 1.0}}
    meta = {"k": 20, "temperature": 0.07, "pooling": "mean", "feature_dim": 16}
    return {"encoder": result, "random_init": result, "pixels": result, "meta": meta}


def test_format_report_is_an_aligned_table_in_percent():
    lines = format_report(fake_report()).splitlines()
    assert lines[0].split() == ["features", "knn", "top1", "knn", "top5", "linear", "top1"] + [
        "linear",
        "top5",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert list(rows) == ["encoder", "random-init", "pixels"]
    assert rows["encoder"] == ["50.00", "100.00", "87.50", "100.00"]
    assert len({len(line) for line in lines[:5]}) == 1  # aligned columns


def test_write_report_is_atomic_valid_json(tmp_path):
    path = tmp_path / "sub" / "report.json"
    report = {**fake_report(), "sweep": {0.0: torch.tensor(0.5)}}
    assert write_report(report, path) == path
    loaded = json.loads(path.read_text())
    assert loaded["encoder"]["linear"]["top1"] == 0.875 and loaded["sweep"] == {"0.0": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like other outputs

    with pytest.raises(TypeError):  # not serialisable: the old report survives intact
        write_report({"bad": object()}, path)
    assert json.loads(path.read_text()) == loaded
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
