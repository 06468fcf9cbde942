"""Every figure of ``notebooks/embeddings.ipynb`` for one checkpoint, as PNGs: :func:`run`,
and its command line :func:`main` (``python -m cpc.viz``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from matplotlib.figure import Figure

from cpc.checkpoint import resolve_checkpoint, run_datamodule, run_parser, run_protocol
from cpc.viz._common import save_figure
from cpc.viz.classes import (
    confusion_matrix_figure,
    format_table,
    knn_predictions,
    per_class_knn_table,
)
from cpc.viz.curves import find_metrics, plot_training_curves
from cpc.viz.embedding import Method, embedding_map
from cpc.viz.labels import run_label_figure
from cpc.viz.neighbours import neighbours_figure
from cpc.viz.sample import random_init_like, sample_features

if TYPE_CHECKING:  # imports Lightning; run and main import it when called
    from cpc.data import ImageDataModule

log = logging.getLogger(__name__)


def run(
    ckpt_path: str = "lightning_logs",
    data: ImageDataModule | str | Mapping[str, Any] | None = None,
    out: str = "figures",
    sample: int = 2000,
    bank: int = 10000,
    method: Method = "auto",
    k: int | None = None,
    queries: int = 8,
    neighbours: int = 8,
    pooling: Literal["mean", "grid", "full"] | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Every figure of ``notebooks/embeddings.ipynb``, as PNGs in ``out``, for one checkpoint.

    The trained encoder is shown side by side with a randomly initialised copy; neighbours and
    kNN are the report's: the run's evaluation protocol (its ``report:`` section,
    :func:`run_protocol`) gives the features' pooling and the kNN's k, temperature,
    standardisation and principal components (``knn_pca``), so on the whole test split with
    the whole train split as bank (``sample`` and ``bank`` at least their sizes) the kNN
    top-1 is the report's (features in float32 on the CPU; a report made on a GPU used bf16).

    Args:
        ckpt_path: a ``.ckpt`` file, or a folder: its newest ``last.ckpt`` / ``*.ckpt``.
        data: the data module (or a class path / ``{"class_path", "init_args"}``, as in a
            config); default: the run's own, from its ``config.yaml`` (:func:`run_datamodule`).
        out: folder for the PNGs and ``knn_per_class.txt``.
        sample: test images to embed, map and classify.
        bank: train images the kNN and the neighbour search look in.
        method: 2-D projection: auto (UMAP if installed, else t-SNE, else PCA), umap, tsne,
            pca.
        k: kNN neighbours; default the run's ``report.k`` (DINO's 20 unless changed).
        queries: rows of the neighbour grid.
        neighbours: neighbours shown per query.
        pooling: features of the latent grid (:func:`cpc.eval.features.pool_grid`); default
            the run's ``report.pooling`` (``configs/fashion_mnist.yaml``: the whole grid).
        seed: sampling and projection seed.

    Returns:
        ``{figure name: path}`` of what was written. Every figure is drawn before the first
        is written, so an error leaves nothing behind; the training curves are left out (with
        a warning) when the run logged none yet.
    """
    from cpc.checkpoint import load_encoder
    from cpc.run.preflight import check_writable

    ckpt, out_dir = resolve_checkpoint(ckpt_path), Path(out)
    check_writable(out_dir, "--out")  # before minutes of feature extraction
    if ckpt != Path(ckpt_path):
        log.info(
            "checkpoint %s (the newest under %s; pass a .ckpt file to choose)", ckpt, ckpt_path
        )
    else:
        log.info("checkpoint %s", ckpt)
    encoder = load_encoder(ckpt, map_location="cpu")
    encoders = {"trained": encoder, "random init": random_init_like(encoder, seed)}
    protocol = run_protocol(ckpt)  # the report's kNN: pooling, k, T, standardize, pca
    if k is not None:
        protocol = dataclasses.replace(protocol, k=k)
    pooling = pooling or protocol.pooling
    fs = sample_features(encoders, run_datamodule(ckpt, data), sample, bank, seed, pooling=pooling)
    predictions = knn_predictions(fs, protocol)
    table = format_table(per_class_knn_table(fs.query_labels, predictions, fs.class_names))
    figures = {
        "embeddings": embedding_map(
            fs.query_features, fs.query_labels, fs.class_names, method, sample, seed
        ),
        "neighbours": neighbours_figure(fs, queries, neighbours, seed, protocol),
        "training_curves": training_curves(ckpt),
        "confusion": confusion_matrix_figure(fs.query_labels, predictions, fs.class_names),
        "label_efficiency": run_label_figure(ckpt),  # when the report has label budgets
    }
    paths = {
        name: save_figure(fig, out_dir / f"{name}.png")
        for name, fig in figures.items()
        if fig is not None
    }
    paths["knn_per_class"] = out_dir / "knn_per_class.txt"
    paths["knn_per_class"].write_text(table + "\n")
    log.info(
        "kNN top-1 per class (k=%d, pooling %s, knn_pca %d, %d bank images):\n%s",
        protocol.k,
        pooling,
        protocol.knn_pca,
        len(fs.bank_labels),
        table,
    )
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def training_curves(ckpt: Path) -> Figure | None:
    """The run's training curves, or None (with a warning saying why) when it logged none."""
    metrics = find_metrics(ckpt)
    if metrics is None:
        log.warning(
            "no training curves: no metrics.csv or TensorBoard log near %s (a run logs every "
            "trainer.log_every_n_steps steps and after each validation)",
            ckpt,
        )
        return None
    try:
        return plot_training_curves(metrics)
    except ValueError as err:  # a log with no loss, accuracy, MI or kNN column yet
        log.warning("no training curves: %s", err)
        return None


def main(args: list[str] | None = None) -> dict[str, Path]:
    """``python -m cpc.viz --ckpt_path CKPT --out figures``: the notebook without Jupyter
    (``--help`` lists every option of :func:`run`). The data module is chosen as in ``cpc
    fit`` (``--data cpc.data.MNISTDataModule --data.root data``); default: the run's own."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # faiss tries its AVX512/AVX2 builds in turn and logs each failed try at INFO
    logging.getLogger("faiss").setLevel(logging.WARNING)
    parser = run_parser("python -m cpc.viz", (run.__doc__ or "").split("\n")[0])
    parser.add_function_arguments(run, skip={"data"}, as_group=False)
    init = parser.instantiate_classes(parser.parse_args(args))
    return run(**{key: value for key, value in init.items() if key != "config"})


def console_main() -> None:
    """``python -m cpc.viz``: :func:`main`, with errors about the input in one line
    (:func:`cpc.run.console.error_line`; ``CPC_DEBUG=1`` shows the traceback)."""
    from cpc.run.console import run_with_one_line_errors

    run_with_one_line_errors(main, "python -m cpc.viz")
