import collections
import copy
import json
from types import SimpleNamespace

import pytest
import torch
from helpers import evaluate_with
from torch import nn

import cpc.eval.report as report_module
from cpc.data.datamodule import ImageDataModule
from cpc.eval.baselines import random_init
from cpc.eval.protocol import EvalProtocol
from cpc.eval.scorer import Scorer
from cpc.eval.storage import FeatureRows
from cpc.models.encoder import PatchEncoder, ResNetEncoder

# one candidate and few epochs: each Lightning run costs ~0.5 s here, the math is tested elsewhere
PROBE = {"epochs": 2, "weight_decays": (0.0,), "batch_size": 32}


class Stripes(ImageDataModule):
    """Two classes, separable in pixels: a bright top half (0) or bottom half (1), plus noise.

    Records which eval splits were requested, in order.
    """

    def __init__(self, flip_test_labels: bool = False, **kwargs) -> None:
        super().__init__(batch_size=16, val_size=16, **kwargs)
        self.flip_test_labels = flip_test_labels
        self.requests: list[str] = []

    num_channels = 1
    image_size = (16, 16)
    class_names = ["top", "bottom"]

    def load_source(self, source):
        n = {"train": 64, "test": 32}[source]
        generator = torch.Generator().manual_seed(len(source))
        labels = torch.arange(n) % 2
        images = torch.randint(0, 60, (n, 1, 16, 16), generator=generator, dtype=torch.uint8)
        images[labels == 0, :, :8] += 150
        images[labels == 1, :, 8:] += 150
        if source == "test" and self.flip_test_labels:
            labels = 1 - labels
        return images, labels

    def eval_dataloader(self, split, batch_size=None):
        self.requests.append(split)
        return super().eval_dataloader(split, batch_size)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return ResNetEncoder(in_channels=1, width=8)


def test_report_has_every_model_and_metric_and_pixels_solve_the_easy_set(encoder, monkeypatch):
    dm = Stripes()
    clock = iter([100.0, 112.5])  # evaluate's start and end (a fake clock: exact seconds)
    monkeypatch.setattr(report_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    report = evaluate_with(encoder, dm, k=5, probe_kwargs=PROBE, progress=False)
    rows = {"encoder", "encoder_compact", "random_init", "random_init_compact", "pixels"}
    assert set(report) == rows | {"meta"}
    for name in rows:
        assert set(report[name]) == {"knn", "linear"}
        assert set(report[name]["knn"]) == {"top1", "top5", "val_top1"}
        assert {"top1", "top5", "val_top1", "weight_decay", "sweep"} <= set(report[name]["linear"])
        assert all(0 <= report[name][m]["top1"] <= 1 for m in ("knn", "linear"))
    assert report["pixels"]["knn"]["top1"] == 1.0
    meta = report["meta"]
    assert meta["feature_dim"] == encoder.num_features and meta["pixel_dim"] == 16 * 16
    assert meta["compact_dim"] == encoder.compact_features
    assert meta["split_sizes"] == {"train": 48, "val": 16, "test": 32}
    assert meta["test_split"] == "test" and meta["datamodule"].endswith("Stripes")
    assert (meta["k"], meta["temperature"], meta["pooling"]) == (5, 0.07, "mean")
    assert meta["knn_standardize"] is True
    assert meta["seconds"] == 12.5
    # every split is read once, for all three models together
    assert sorted(dm.requests) == ["test", "train", "val"]
    # JSON-ready as it is: a round trip changes nothing but the sweeps' keys (JSON keys are str)
    round_trip = json.loads(json.dumps(report))
    for name in rows:
        sweep = round_trip[name]["linear"]["sweep"]
        round_trip[name]["linear"]["sweep"] = {float(wd): top1 for wd, top1 in sweep.items()}
    assert round_trip == report


def test_test_split_never_influences_selection(encoder):
    """Flipping every test label changes the reported test accuracy and nothing else."""
    kwargs = dict(
        k=5,
        pooling="grid",
        probe_kwargs={**PROBE, "weight_decays": (0.0, 1e-3)},
        baselines=False,
        progress=False,
    )
    clean = evaluate_with(encoder, Stripes(), **kwargs)
    flipped = evaluate_with(encoder, Stripes(flip_test_labels=True), **kwargs)
    assert (
        set(clean) == {"encoder", "encoder_compact", "meta"} and clean["meta"]["pixel_dim"] is None
    )
    assert clean["meta"]["feature_dim"] == 4 * encoder.num_features  # 2x2 grid pooling
    a, b = clean["encoder"]["linear"], flipped["encoder"]["linear"]
    assert list(a["sweep"]) == [0.0, 1e-3]
    assert (a["sweep"], a["weight_decay"], a["val_top1"]) == (
        b["sweep"],
        b["weight_decay"],
        b["val_top1"],
    )
    assert b["top1"] == pytest.approx(1 - a["top1"])  # two classes: every answer flips
    assert flipped["encoder"]["knn"]["top1"] == pytest.approx(1 - clean["encoder"]["knn"]["top1"])


def test_without_a_test_split_val_is_reported_with_no_selection(encoder):
    class NoTest(Stripes):
        def dataset(self, split):
            if split == "test":
                raise ValueError("no test split: set test_root")
            return super().dataset(split)

    report = evaluate_with(
        encoder, NoTest(), k=5, probe_kwargs=PROBE, baselines=False, progress=False
    )
    assert report["meta"]["test_split"] == "val"
    linear = report["encoder"]["linear"]
    assert list(linear["sweep"]) == [0.0]  # one candidate: nothing is selected on val
    assert linear["top1"] == linear["val_top1"]


def test_random_init_is_seeded_fresh_and_leaves_the_original_alone(encoder):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)  # "trained" weights, far from any initialisation
    trained = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng = torch.get_rng_state()
    a, b, c = random_init(encoder, 0), random_init(encoder, 0), random_init(encoder, 1)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is untouched
    for key, value in trained.items():
        assert torch.equal(encoder.state_dict()[key], value)
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    conv = next(n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    assert not torch.equal(a.state_dict()[conv], trained[conv])
    assert not torch.equal(a.state_dict()[conv], c.state_dict()[conv])
    encoder.load_state_dict(before)


def test_compact_rows_score_what_encoder_of_images_returns(encoder):
    """The compact row equals scoring encoder(images) by hand; pool_size 2 makes it 4D wide."""
    dm = Stripes()
    wide = ResNetEncoder(in_channels=1, width=8, pool_size=2)
    wide.load_state_dict(encoder.state_dict())
    report = evaluate_with(wide, dm, k=5, probe_kwargs=PROBE, progress=False, baselines=False)
    assert report["meta"]["compact_dim"] == 4 * encoder.num_features
    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        batches = [(wide(x.float() / 255), y) for x, y in dm.eval_dataloader(split)]
        feats[split] = torch.cat([f for f, _ in batches]).detach()
        labels[split] = torch.cat([y for _, y in batches])
    by_hand = Scorer(dm.num_classes, EvalProtocol(k=5), {"seed": 0, **PROBE}).row(feats, labels)
    assert report["encoder_compact"]["knn"] == by_hand["knn"]
    assert report["encoder_compact"]["linear"]["top1"] == by_hand["linear"]["top1"]


def test_memmapped_features_and_an_approximate_index_leave_the_report_unchanged(encoder):
    """``memmap`` keeps features on disk; a bank above ``knn_exact_max`` goes through the IVF
    index (one cell at this size, so exact): the numbers stay those of the default path."""
    kwargs = dict(k=5, probe_kwargs=PROBE, baselines=False, progress=False)
    default = evaluate_with(encoder, Stripes(), **kwargs)
    other = evaluate_with(encoder, Stripes(), **kwargs, memmap=True, knn_exact_max=16)
    assert (other["meta"]["memmap"], other["meta"]["knn_exact_max"]) == (True, 16)
    for name in ("encoder", "encoder_compact"):
        assert other[name]["knn"] == default[name]["knn"]
        assert other[name]["linear"]["top1"] == pytest.approx(default[name]["linear"]["top1"])


def test_an_unfitted_compact_projection_is_fitted_on_train_and_scored_as_encoder_of_images(
    encoder,
):
    """compact_dim: the report fits the projection on the whole train split (each model its
    own: the random-init copy is refitted), on a copy, then scores what encoder(images) of that
    copy returns; the caller's encoder is left unfitted, its weights unchanged."""
    dm = Stripes()
    projected = ResNetEncoder(in_channels=1, width=8, pool_size=2, compact_dim=6)
    projected.load_state_dict(encoder.state_dict(), strict=False)  # no projection in `encoder`
    before = copy.deepcopy(projected.state_dict())
    report = evaluate_with(projected, dm, k=5, probe_kwargs=PROBE, progress=False)
    assert not projected.compact_projection.fitted  # the caller's module is left alone
    assert all(torch.equal(v, before[k]) for k, v in projected.state_dict().items())
    assert report["meta"]["compact_dim"] == 6
    fitted = copy.deepcopy(projected)  # fitted by hand as the report does: all train images
    with torch.no_grad():
        train = torch.cat([x for x, _ in dm.eval_dataloader("train")]).float() / 255
        fitted.fit_compact(fitted.pool(fitted.forward_features(train)))  # (48, 4D)
    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        with torch.no_grad():
            batches = [(fitted(x.float() / 255), y) for x, y in dm.eval_dataloader(split)]
        feats[split] = torch.cat([f for f, _ in batches])
        labels[split] = torch.cat([y for _, y in batches])
    torch.testing.assert_close(torch.cov(feats["train"].T), torch.eye(6), atol=1e-3, rtol=0)
    by_hand = Scorer(dm.num_classes, EvalProtocol(k=5), {"seed": 0, **PROBE}).row(feats, labels)
    assert report["encoder_compact"]["knn"] == by_hand["knn"]
    assert "random_init_compact" in report


def test_each_image_is_encoded_once_per_model_and_a_fitted_projection_runs_per_batch(
    encoder, monkeypatch
):
    """What the report's time and memory rest on: every image of every split goes through each
    model's encoder once, for all its features; with a fitted compact projection (last.ckpt)
    only the projected rows are kept, never the wider pooled grid; the unfitted random-init
    copy keeps its pooled grid of the train split alone, to be fitted on."""
    fitted = ResNetEncoder(in_channels=1, width=8, pool_size=2, compact_dim=6)
    fitted.load_state_dict(encoder.state_dict(), strict=False)
    dim = fitted.num_features
    fitted.fit_compact(torch.randn(100, 4 * dim, generator=torch.Generator().manual_seed(0)))
    images, widths = collections.Counter(), collections.Counter()
    forward, append = PatchEncoder.forward_features, FeatureRows.append

    def counting(self, x):
        images["trained" if self is fitted else "random init"] += len(x)
        return forward(self, x)

    def recording(self, chunk):
        widths[chunk.shape[1]] += len(chunk)
        return append(self, chunk)

    monkeypatch.setattr(PatchEncoder, "forward_features", counting)
    monkeypatch.setattr(FeatureRows, "append", recording)
    report = evaluate_with(fitted, Stripes(), k=5, probe_kwargs=PROBE, progress=False)
    total, train = 48 + 16 + 32, 48
    assert images == {"trained": total, "random init": total}
    # mean-pooled rows of both models, compact rows (all of the trained model's, the random
    # init's after its fit), the random init's pooled train grid, pixels
    assert widths == {dim: 2 * total, 6: 2 * total - train, 4 * dim: train, 16 * 16: total}
    assert report["meta"]["compact_dim"] == 6 and "random_init_compact" in report


def test_one_knn_index_per_row(encoder, monkeypatch):
    """The kNN's test and val queries search one index of the bank (the val top-1 is free)."""
    import cpc.eval.knn as knn_module

    original, banks = knn_module.build_index, []

    def counting(bank, *args, **kwargs):
        banks.append(len(bank))
        return original(bank, *args, **kwargs)

    monkeypatch.setattr(knn_module, "build_index", counting)
    report = evaluate_with(
        encoder, Stripes(), k=5, probe_kwargs=PROBE, progress=False, baselines=False
    )
    assert banks == [48, 48]  # encoder, encoder compact
    assert set(report["encoder"]["knn"]) == {"top1", "top5", "val_top1"}
