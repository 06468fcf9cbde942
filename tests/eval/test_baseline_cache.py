"""The report's baselines are computed once per (data, architecture, protocol), then reused."""

import pytest
import torch
from test_report import PROBE, Stripes

import cpc.eval.report as report_module
from cpc.eval.baseline_cache import BaselineCache, fingerprint
from cpc.eval.report import evaluate_encoder
from cpc.models.encoder import ResNetEncoder


@pytest.fixture
def extractions(monkeypatch):
    """The names of the models whose features each report extracted, in order."""
    calls: list[list[str]] = []
    original = report_module.extract_splits

    def counting(encoders, *args, **kwargs):
        calls.append(list(encoders))
        return original(encoders, *args, **kwargs)

    monkeypatch.setattr(report_module, "extract_splits", counting)
    return calls


def report(encoder, dm=None, **protocol):
    dm = dm or Stripes()
    kwargs = {"k": 5, "probe_kwargs": PROBE, **protocol}
    return evaluate_encoder(encoder, dm, device="cpu", progress=False, **kwargs)


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
