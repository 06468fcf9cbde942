"""Every figure of ``notebooks/embeddings.ipynb`` for one checkpoint, as PNGs: :func:`run`,
and its command line :func:`main` (``python -m cpc.viz``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from cpc.viz.classes import (
    confusion_matrix_figure,
    format_table,
    knn_predictions,
    per_class_knn_table,
)
from cpc.viz.curves import find_metrics, plot_training_curves
from cpc.viz.embedding import Method, embedding_map
from cpc.viz.neighbours import neighbours_figure
from cpc.viz.sample import (
    Data,
    make_datamodule,
    random_init_like,
    resolve_checkpoint,
    sample_features,
)

log = logging.getLogger(__name__)


def run(
    ckpt_path: str = "lightning_logs",
    data: Data = "fashion_mnist",
    root: str = "data",
    out: str = "figures",
    sample: int = 2000,
    bank: int = 10000,
    method: Method = "auto",
    k: int = 20,
    queries: int = 8,
    neighbours: int = 8,
    image_size: int = 28,
    channels: int = 1,
    test_root: str | None = None,
    pooling: Literal["mean", "grid", "full"] = "full",
    seed: int = 0,
) -> dict[str, Path]:
    """Every figure of ``notebooks/embeddings.ipynb``, as PNGs in ``out``, for one checkpoint.

    The trained encoder is shown side by side with a randomly initialised copy.

    Args:
        ckpt_path: a ``.ckpt`` file, or a folder: its newest ``last.ckpt`` / ``*.ckpt``.
        data: fashion_mnist, mnist, cifar10, stl10 or folder.
        root: data folder (for ``folder``: ``root/<class>/<image>``).
        out: folder for the PNGs and ``knn_per_class.txt``.
        sample: test images to embed, map and classify.
        bank: train images the kNN and the neighbour search look in.
        method: 2-D projection: auto (UMAP if installed, else t-SNE, else PCA), umap, tsne,
            pca.
        k: kNN neighbours (DINO's 20).
        queries: rows of the neighbour grid.
        neighbours: neighbours shown per query.
        image_size: image side, for ``folder`` only.
        channels: 1 or 3, for ``folder`` only.
        test_root: test folder, for ``folder`` only (else queries come from the val split).
        pooling: features of the latent grid (:func:`cpc.eval.features.pool_grid`): the whole
            grid by default, what ``configs/fashion_mnist.yaml``'s report evaluates.
        seed: sampling and projection seed.

    Returns:
        ``{figure name: path}`` of what was written.
    """
    from cpc.checkpoint import load_encoder

    ckpt, out_dir = resolve_checkpoint(ckpt_path), Path(out)
    log.info("checkpoint %s", ckpt)
    encoder = load_encoder(ckpt, map_location="cpu")
    encoders = {"trained": encoder, "random init": random_init_like(encoder, seed)}
    dm = make_datamodule(data, root, image_size, channels, test_root)
    fs = sample_features(encoders, dm, sample, bank, seed, pooling=pooling)
    paths = {name: out_dir / f"{name}.png" for name in ("embeddings", "neighbours", "confusion")}
    embedding_map(fs.query_features, fs.query_labels, fs.class_names, method, sample, seed,
                  save=paths["embeddings"])  # fmt: skip
    neighbours_figure(fs, queries, neighbours, seed, save=paths["neighbours"])
    if (metrics := find_metrics(ckpt)) is not None:
        paths["training_curves"] = out_dir / "training_curves.png"
        plot_training_curves(metrics, save=paths["training_curves"])
    else:
        log.warning("no metrics.csv or TensorBoard log near %s: no training curves", ckpt)
    predictions = knn_predictions(fs, k)
    table = format_table(per_class_knn_table(fs.query_labels, predictions, fs.class_names))
    paths["knn_per_class"] = out_dir / "knn_per_class.txt"
    paths["knn_per_class"].write_text(table + "\n")
    confusion_matrix_figure(fs.query_labels, predictions, fs.class_names, save=paths["confusion"])
    log.info("kNN top-1 per class (k=%d, %d bank images):\n%s", k, len(fs.bank_labels), table)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def main(args: list[str] | None = None) -> dict[str, Path]:
    """``python -m cpc.viz --ckpt_path CKPT --data fashion_mnist --root data --out figures``:
    the notebook without Jupyter (``--help`` lists every option of :func:`run`)."""
    from jsonargparse import auto_cli

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return auto_cli(run, args=args)
