"""The report's baselines are computed once per (data, architecture, protocol), then reused."""

import faiss
import numpy as np
import pytest
import torch
from helpers import evaluate_with
from test_report import PROBE, Stripes

import cpc.eval.baseline_cache as cache_module
import cpc.eval.baselines as baselines_module
import cpc.eval.report as report_module
from cpc.eval.baseline_cache import BaselineCache, code_version, fingerprint
from cpc.models.encoder import ResNetEncoder


@pytest.fixture
def extractions(monkeypatch):
    """The names of the models whose features each report extracted, in order."""
    calls: list[list[str]] = []
    original = report_module.extract_splits

    def counting(encoders, *args, **kwargs):
        calls.append(list(encoders))
        return original(encoders, *args, **kwargs)

    for module in (report_module, baselines_module):  # the encoder's, the baselines'
        monkeypatch.setattr(module, "extract_splits", counting)
    return calls


def report(encoder, dm=None, **protocol):
    dm = dm or Stripes()
    kwargs = {"k": 5, "probe_kwargs": PROBE, **protocol}
    return evaluate_with(encoder, dm, device="cpu", progress=False, **kwargs)


def rows(result):
    return {name: row for name, row in result.items() if name != "meta"}


@pytest.mark.slow
def test_second_report_reuses_the_baselines(extractions, baseline_cache):
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=8)
    first = report(encoder)
    assert extractions == [["encoder"], ["random_init"]]
    assert first["meta"]["baselines_cached"] is False and len(list(baseline_cache.iterdir())) == 1

    with torch.no_grad():  # a trained encoder changes; its baselines do not
        next(encoder.parameters()).add_(0.5)
    second = report(encoder)
    assert extractions[2:] == [["encoder"]]  # no baseline features extracted again
    assert second["meta"]["baselines_cached"] is True
    for name in ("random_init", "random_init_compact", "pixels"):
        assert second[name] == first[name]  # the same numbers, sweep keys floats again
    assert second["meta"]["pixel_dim"] == first["meta"]["pixel_dim"] == 16 * 16
    assert list(rows(second)) == list(rows(first))  # table order kept


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        {"protocol": {"k": 3}},
        {"protocol": {"pooling": "grid"}},
        {"protocol": {"seed": 1}},
        {"encoder": {"width": 16}},
        {"encoder": {"pool_size": 2}},
        {"data": {"flip_test_labels": True}},
    ],
    ids=lambda change: str(change),
)
def test_a_changed_protocol_architecture_or_data_recomputes(extractions, change):
    report(ResNetEncoder(width=8))
    changed = report(
        ResNetEncoder(**{"width": 8, **change.get("encoder", {})}),
        Stripes(**change.get("data", {})),
        **change.get("protocol", {}),
    )
    assert extractions[-1] == ["random_init"] and changed["meta"]["baselines_cached"] is False


@pytest.mark.slow
def test_cache_off_or_unreadable_recomputes(extractions, baseline_cache):
    report(ResNetEncoder(width=8), cache=False)
    assert not baseline_cache.exists()
    report(ResNetEncoder(width=8))
    (stored,) = baseline_cache.iterdir()
    stored.write_text("{not json")
    again = report(ResNetEncoder(width=8))
    assert extractions[-1] == ["random_init"] and again["meta"]["baselines_cached"] is False


def test_fingerprint_sees_every_pixel_and_label():
    images, labels = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4)
    base = fingerprint([(images, labels)])
    assert fingerprint([(images, labels)]) == base
    assert fingerprint([(images, labels.flip(0))]) != base
    images[3, 0, 1, 1] = 1
    assert fingerprint([(images, labels)]) != base


def test_a_key_collision_is_not_a_hit(tmp_path):
    cache = BaselineCache(tmp_path)
    key = BaselineCache.key(a=1)
    cache.save(key, {"row": 1})
    assert cache.load(key) == {"row": 1}
    path = cache.path(key)
    path.write_text(path.read_text().replace('"a": 1', '"a": 2'))  # another key, same file
    assert cache.load(key) is None


def test_code_version_sees_every_edit_of_the_source(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(tmp_path)
    source = tmp_path / "probe_code.py"
    source.write_text("def top1(hits):\n    return hits.mean()\n")
    first = code_version(["probe_code"])
    assert code_version(["probe_code"]) == first
    source.write_text("def top1(hits):\n    return hits.float().mean()\n")
    assert code_version(["probe_code"])["code"] != first["code"]
    assert set(first) == {"code", "torch", "faiss", "numpy"}


@pytest.mark.parametrize("change", ["code", "torch", "faiss", "numpy"])
def test_changed_eval_code_or_library_version_recomputes(
    extractions, tmp_path, monkeypatch, change
):
    """The rows are computed again after an edit to an evaluation module (a protocol function
    here) or an upgrade of torch, faiss or numpy."""
    monkeypatch.syspath_prepend(tmp_path)
    source = tmp_path / "protocol_code.py"
    source.write_text("def top1(hits):\n    return hits.mean()\n")
    monkeypatch.setattr(cache_module, "EVAL_CODE", (*cache_module.EVAL_CODE, "protocol_code"))
    report(ResNetEncoder(width=8))
    assert report(ResNetEncoder(width=8))["meta"]["baselines_cached"] is True
    if change == "code":
        source.write_text("def top1(hits):\n    return hits.float().mean()\n")
    else:
        library = {"torch": torch, "faiss": faiss, "numpy": np}[change]
        monkeypatch.setattr(library, "__version__", library.__version__ + ".post1")
    changed = report(ResNetEncoder(width=8))
    assert extractions[-1] == ["random_init"] and changed["meta"]["baselines_cached"] is False
