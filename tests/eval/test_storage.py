"""Features kept in memory-mapped temporary files equal those kept in RAM, and score the same."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cpc.eval.features import extract_feature_sets
from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol
from cpc.eval.storage import FeatureRows, FeatureStore
from cpc.models.encoder import ResNetEncoder


def mapping_of(tensor: torch.Tensor) -> str | None:
    """The path of the memory mapping holding ``tensor``'s data ('' if anonymous), from
    ``/proc/self/maps``; None if no mapping holds it."""
    address = tensor.untyped_storage().data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(a, 16) for a in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) == 6 else ""
    return None


@pytest.fixture(scope="module")
def loader():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.arange(40) % 4
    return DataLoader(TensorDataset(images, labels), batch_size=7)  # a last, short batch


def test_memmapped_and_in_ram_features_give_the_same_knn_result(loader):
    torch.manual_seed(0)
    encoder = ResNetEncoder(width=8)
    kwargs = dict(pooling="grid", progress=False, pixels=True, compact=True)
    ram, ram_y = extract_feature_sets({"enc": encoder}, loader, **kwargs)
    disk, disk_y = extract_feature_sets({"enc": encoder}, loader, **kwargs, memmap=True)
    assert set(disk) == set(ram) == {"enc", "enc_compact", "pixels"}
    torch.testing.assert_close(disk_y, ram_y)
    for name in ram:
        assert disk[name].dtype == torch.float32 and disk[name].shape == ram[name].shape
        torch.testing.assert_close(disk[name], ram[name], rtol=0, atol=0)
        assert "(deleted)" in mapping_of(disk[name])  # an unlinked temporary file, mapped
        assert "(deleted)" not in (mapping_of(ram[name]) or "")
    bank, queries = slice(0, 30), slice(30, 40)
    for features in ("enc", "pixels"):
        sets = (ram[features], disk[features])
        fitted = [KNN(EvalProtocol(k=5)).fit(f[bank], ram_y[bank], 4) for f in sets]
        pairs = list(zip(fitted, sets, strict=True))
        scores = [knn.accuracy(f[queries], ram_y[queries]) for knn, f in pairs]
        assert scores[0] == scores[1]
        found = [knn.neighbours(f[queries], 5) for knn, f in pairs]
        torch.testing.assert_close(found[0], found[1])


def test_rows_of_another_width_are_refused():
    rows = FeatureRows(memmap=True)
    rows.append(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="rows of width 3 expected"):
        rows.append(torch.zeros(2, 4))


def test_a_store_makes_each_feature_set_on_first_use():
    store = FeatureStore(memmap=True)
    store["a"].append(torch.ones(2, 3))
    store["a"].append(torch.full((1, 3), 2.0))
    store["b"].append(torch.zeros(1, 5, dtype=torch.float64))
    tensors = store.tensors()
    torch.testing.assert_close(tensors["a"], torch.tensor([[1.0] * 3, [1.0] * 3, [2.0] * 3]))
    assert tensors["b"].dtype == torch.float32 and tensors["b"].shape == (1, 5)


@pytest.mark.parametrize("capacity", [None, 12, 40, 100])
def test_rows_in_ram_fill_one_tensor_of_the_expected_length_and_keep_any_beyond(capacity):
    chunks = list(torch.randn(40, 3, generator=torch.Generator().manual_seed(0)).split(7))
    rows = FeatureRows(capacity=capacity)
    for chunk in chunks:
        rows.append(chunk)
    features = rows.tensor()
    assert torch.equal(features, torch.cat(chunks))
    if capacity is not None and capacity >= 40:  # written in place: no copy at the end
        assert features.untyped_storage().data_ptr() == rows.buffer.untyped_storage().data_ptr()


def test_extraction_writes_a_loaders_rows_in_place(loader, monkeypatch):
    """The features of a DataLoader of known length are allocated once, never concatenated."""
    stores, tensor = [], FeatureRows.tensor

    def recording(rows):
        stores.append(rows)
        return tensor(rows)

    monkeypatch.setattr(FeatureRows, "tensor", recording)
    feats, _ = extract_feature_sets({}, loader, progress=False, pixels=True)
    (rows,) = stores
    assert feats["pixels"].shape == (40, 28 * 28) and rows.chunks == []
    assert feats["pixels"].untyped_storage().data_ptr() == rows.buffer.untyped_storage().data_ptr()
