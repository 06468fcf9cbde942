"""notebooks/embeddings.ipynb and its script twin `python -m cpc.viz`, run on a tiny checkpoint."""

import dataclasses
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from helpers import fit_args
from nbclient import NotebookClient
from PIL import Image

from cpc import load_encoder, viz
from cpc.cli import cli_main
from cpc.eval import evaluate
from cpc.viz import script
from cpc.viz.classes import knn_predictions

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "embeddings.ipynb"
PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ["embeddings.png", "neighbours.png", "training_curves.png", "confusion.png"]


def write_folder(root: Path, n_per_class: int, seed: int) -> Path:
    """28x28 grayscale PNGs in root/<class>/: dark and bright noise, so the classes differ."""
    rng = np.random.default_rng(seed)
    for c, (low, high) in {"dark": (0, 120), "bright": (120, 255)}.items():
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(low, high, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def folder_data(train: Path, test: Path) -> dict:
    """The image folders as a config's data section (default val_size: 22 train images)."""
    init_args = {"root": str(train), "test_root": str(test), "image_size": 28, "channels": 1}
    return {"class_path": "cpc.data.ImageFolderDataModule", "init_args": init_args}


#: the run's evaluation protocol, none of it the default, so that viz must read it to match
PROTOCOL = {"report.pooling": "grid", "report.k": 5, "report.knn_pca": 8}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(checkpoint, train folder, test folder) of a 1-epoch fit of a width-8 encoder."""
    tmp = tmp_path_factory.mktemp("viz")
    train, test = write_folder(tmp / "train", 12, 0), write_folder(tmp / "test", 6, 1)
    cli_main(fit_args(train, tmp / "run", "--trainer.log_every_n_steps=1", **PROTOCOL))
    (ckpt,) = (tmp / "run").rglob("last.ckpt")
    return ckpt, train, test


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_and_saves_figures(tiny_run, tmp_path, monkeypatch):
    ckpt, train, test = tiny_run
    out = tmp_path / "figures"
    env = {
        "CPC_CHECKPOINT": str(ckpt.parents[2]),  # a run folder: its newest checkpoint is used
        "CPC_DATA": json.dumps(folder_data(train, test)),
        "CPC_SAMPLE": "12",
        "CPC_BANK": "100",  # more than the 22 train images (24 less 10% val): all are used
        "CPC_METHOD": "pca",
        "CPC_OUT_DIR": str(out),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed clean
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": NOTEBOOK.parent}}
    ).execute()

    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG and (out / name).stat().st_size > 1000, name
    shown = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(shown) == len(FIGURES)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "12 test / 22 train images" in text
    assert "class   n  trained  random init" in text  # the per-class kNN table
    assert "   all  12" in text


@pytest.mark.slow
def test_script_writes_the_same_figures_and_its_knn_is_the_reports(tiny_run, tmp_path, monkeypatch):
    """Every test image (12) against every train image (22, the bank): the script's kNN top-1
    is the report's, with the run's pooling, k and knn_pca (none of them the default)."""
    ckpt, train, test = tiny_run
    out = tmp_path / "figures"
    seen = {}

    def knn_spy(sample, protocol):
        seen.update(sample=sample, protocol=protocol)
        seen["predictions"] = knn_predictions(sample, protocol)
        return seen["predictions"]

    monkeypatch.setattr(script, "knn_predictions", knn_spy)
    paths = viz.main(
        [
            f"--ckpt_path={ckpt}",
            "--data=cpc.data.ImageFolderDataModule",
            f"--data.root={train}",
            f"--data.test_root={test}",
            "--data.image_size=28",
            "--data.channels=1",
            f"--out={out}",
            "--sample=12",
            "--bank=100",
            "--method=pca",
            "--neighbours=4",
        ]
    )
    assert sorted(p.name for p in paths.values()) == sorted([*FIGURES, "knn_per_class.txt"])
    for path in paths.values():
        assert path.parent == out and path.stat().st_size > 0
        assert path.suffix != ".png" or path.read_bytes()[:8] == PNG
    table = (out / "knn_per_class.txt").read_text().splitlines()
    assert table[0].split() == ["class", "n", "trained", "random", "init"]
    assert [row.split()[:2] for row in table[2:]] == [["bright", "6"], ["dark", "6"], ["all", "12"]]

    protocol = viz.run_protocol(ckpt)
    assert seen["protocol"] == protocol and (protocol.k, protocol.knn_pca) == (5, 8)
    sample, dim = seen["sample"], 16  # D of the width-8 encoder
    assert sample.bank_features["trained"].shape == (22, 4 * dim)  # grid pooling: 2x2 cells
    report = evaluate(
        load_encoder(ckpt),
        viz.run_datamodule(ckpt, folder_data(train, test)),
        dataclasses.replace(protocol, compact=False, probe_kwargs={"epochs": 1}),
        baselines=False,
        progress=False,
    )
    assert report["meta"]["split_sizes"] == {"train": 22, "val": 2, "test": 12}
    top1 = (seen["predictions"]["trained"] == sample.query_labels).mean()
    assert top1 == pytest.approx(report["encoder"]["knn"]["top1"], abs=1e-6)


@pytest.mark.slow  # its fixture fits a run
def test_the_data_module_defaults_to_the_runs_own(tiny_run):
    ckpt, train, _ = tiny_run
    dm = viz.run_datamodule(ckpt)  # the data section of the run's config.yaml
    assert type(dm).__name__ == "ImageFolderDataModule"
    assert (dm.root, dm.val_size, dm.batch_size) == (str(train), 0.25, 8)
    protocol = viz.run_protocol(ckpt)  # the report section of the run's config.yaml
    assert (protocol.pooling, protocol.k, protocol.knn_pca) == ("grid", 5, 8)
    assert protocol.knn_standardize is True
    with pytest.raises(ValueError, match="no config.yaml with a data section"):
        viz.run_datamodule(ckpt.parents[3] / "elsewhere.ckpt")
