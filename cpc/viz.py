"""See what an encoder learned: 2-D maps, nearest neighbours, training curves, per-class kNN.

The plots behind ``notebooks/embeddings.ipynb`` and its plain-script twin
``python -m cpc.viz --ckpt_path CKPT --data fashion_mnist --root data --out figures``:

- :func:`embedding_map`: the features in 2-D, coloured by class: UMAP (McInnes et al., 2018)
  when ``umap-learn`` is installed, else t-SNE (van der Maaten & Hinton, 2008) from
  scikit-learn, else PCA (numpy); the method is in the title.
- :func:`neighbour_grid`: query images, each followed by its top-k cosine neighbours (faiss)
  from the train set; neighbours of another class get a red frame.
- :func:`plot_training_curves`: loss, contrastive accuracy, the InfoNCE mutual-information
  bound ``log N - L`` (van den Oord et al., 2018, eq. 10) and the online kNN accuracy, from a
  run's ``metrics.csv`` (or its TensorBoard events).
- :func:`per_class_knn_table` and :func:`confusion_matrix_figure`: the weighted kNN classifier
  of Wu et al. (2018) / DINO (:func:`cpc.eval.knn.knn_predict`), class by class.

Every figure function takes one array or a ``{name: array}`` mapping, drawing one panel per
name, so a trained encoder sits side by side with a randomly initialised copy
(:func:`random_init_like`): the gap between them is what pretraining bought.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot, so nothing here needs a
display or touches a global backend (``savefig`` renders PNGs with Agg); Jupyter shows a Figure
that ends a cell. matplotlib, scikit-learn and umap-learn come with ``pip install -e
'.[notebook]'``; ``cpc`` itself never imports this module.

Shape letters: ``N`` train-bank images, ``Q`` query (test) images, ``F`` feature size,
``k`` neighbours, ``C`` classes (``C`` is also image channels in ``(C, H, W)``).
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import faiss
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

if TYPE_CHECKING:  # imports Lightning; the pipeline functions import it when called
    from cpc.data import ImageDataModule

log = logging.getLogger(__name__)

Method = Literal["auto", "umap", "tsne", "pca"]
Data = Literal["fashion_mnist", "mnist", "cifar10", "stl10", "folder"]
Panels = np.ndarray | torch.Tensor | Mapping[str, np.ndarray | torch.Tensor]

MISMATCH_COLOUR = "tab:red"
#: (suffix a metrics.csv column ends with, panel title), in panel order; kNN columns are matched
#: first (by ``knn`` in the name), so ``online/knn_acc`` is not taken for contrastive accuracy.
CURVE_PANELS = (
    ("loss", "loss"),
    ("acc", "contrastive accuracy"),
    ("mi_bound_nats", "MI lower bound (nats)"),
    ("knn_top1", "online kNN top-1"),
)


# -- 2-D map ------------------------------------------------------------------------------
def embed_2d(
    features: np.ndarray, method: Method = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """Project L2-normalised features to 2-D (their geometry is the kNN's: cosine).

    Args:
        features: ``(N, F)`` with ``N >= 3``.
        method: ``"umap"``, ``"tsne"``, ``"pca"`` or ``"auto"`` (the first one installed).
        seed: random state of UMAP / t-SNE.

    Returns:
        ``(N, 2)`` coordinates and the method's display name (``"UMAP"``, ``"t-SNE"``,
        ``"PCA"``).
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"features must be (N, F) with N >= 3, got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    method = _auto_method() if method == "auto" else method
    if method == "umap":
        import umap

        with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state"
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed)
            return reducer.fit_transform(x), "UMAP"
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed)
        return tsne.fit_transform(x), "t-SNE"
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, F), F)
        coords = centred @ vt[:2].T  # (N, F) @ (F, <=2) -> (N, <=2)
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))), "PCA"
    raise ValueError(f"method must be 'auto', 'umap', 'tsne' or 'pca', got {method!r}")


def _auto_method() -> str:
    for module, method in (("umap", "umap"), ("sklearn.manifold", "tsne")):
        try:
            __import__(module)
        except ImportError:
            continue
        return method
    return "pca"


def embedding_map(
    features: Panels,
    labels: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    method: Method = "auto",
    max_points: int = 2000,
    seed: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """Scatter of the features in 2-D, one colour per class, a legend of class names.

    Args:
        features: ``(Q, F)``, or ``{name: (Q, F)}`` for one panel per encoder (same images).
        labels: ``(Q,)`` integer classes in ``[0, len(class_names))``.
        class_names: name of each class index.
        method: see :func:`embed_2d`; the title names the one used.
        max_points: a seeded random subset of at most this many points is drawn (UMAP and
            t-SNE are slow on a CPU past a few thousand).
        seed: subset and projection seed.
        save: write the figure there as PNG too.
    """
    panels, labels = _panels(features, len(labels)), _labels(labels, len(class_names))
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:max_points])
    fig = Figure(figsize=(5 * len(panels) + 2, 5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = _class_colours(len(class_names))
    for ax, (name, panel) in zip(axes, panels.items(), strict=True):
        coords, shown = embed_2d(panel[keep], method, seed)
        for c in np.unique(labels[keep]):
            xy = coords[labels[keep] == c]
            ax.scatter(xy[:, 0], xy[:, 1], s=5, color=colours[c], label=class_names[c])
        ax.set_title(f"{name}: {shown} of {len(keep)} test images" if name else shown)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", markerscale=3)
    return _maybe_save(fig, save)


# -- nearest neighbours -------------------------------------------------------------------
def nearest_neighbours(
    bank_features: np.ndarray | torch.Tensor, query_features: np.ndarray | torch.Tensor, k: int
) -> np.ndarray:
    """Indices ``(Q, k)`` of each query's ``k`` most cosine-similar bank rows, nearest first.

    An exact faiss ``IndexFlatIP`` on L2-normalised ``(N, F)`` / ``(Q, F)`` features.
    """
    bank, query = _normalised(bank_features), _normalised(query_features)
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be in [1, {len(bank)}] (the bank size), got {k}")
    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(bank)
    return index.search(query, k)[1]  # (Q, k)


def pick_queries(labels: np.ndarray | torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices taking the classes in turn (one image of each before a second of any)."""
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = np.zeros(len(labels), dtype=np.int64)  # how many earlier picks share the class
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    return order[np.lexsort((labels[order], rank[order]))][:n]


def neighbour_grid(
    query_images: np.ndarray | torch.Tensor,
    neighbour_images: Panels,
    query_labels: np.ndarray | torch.Tensor,
    neighbour_labels: Panels,
    class_names: Sequence[str] | None = None,
    save: str | Path | None = None,
) -> Figure:
    """One row per query: the query, then its neighbours; other-class neighbours framed red.

    Each panel is one montage image (one axes, not one per image: fast to lay out and save),
    with a class name above every image, red where it differs from the query's.

    Args:
        query_images: ``(Q, C, H, W)`` uint8, or float in [0, 1].
        neighbour_images: ``(Q, k, C, H, W)``, or ``{name: (Q, k, C, H, W)}`` for one grid per
            encoder, side by side.
        query_labels: ``(Q,)``.
        neighbour_labels: ``(Q, k)``, or ``{name: (Q, k)}`` with the names of
            ``neighbour_images``.
        class_names: names shown above each image (default: the class index).
        save: write the figure there as PNG too.
    """
    from matplotlib.patches import Rectangle

    queries, query_labels = _unit_rgb(query_images), _as_numpy(query_labels)
    images = {n: _unit_rgb(x) for n, x in _panels(neighbour_images, len(queries)).items()}
    labels = _panels(neighbour_labels, len(queries))
    if images.keys() != labels.keys():
        raise ValueError(f"neighbour_images has panels {list(images)}, labels {list(labels)}")
    (q, k), (h, w) = labels[next(iter(labels))].shape, queries.shape[1:3]
    pad, band, gap = max(2, w // 10), max(6, h // 3), w // 2  # pixels: border, label, gap
    cell_w, cell_h = w + pad, h + band + pad
    canvas_w = pad + (k + 1) * cell_w + gap
    fig = Figure(
        figsize=(len(images) * 0.75 * canvas_w / cell_w, 0.75 * q * cell_h / cell_w + 0.4),
        layout="constrained",
    )
    for ax, name in zip(fig.subplots(1, len(images), squeeze=False)[0], images, strict=True):
        canvas = np.ones((q * cell_h, canvas_w, 3), dtype=np.float32)  # white
        for row in range(q):
            y = row * cell_h + band
            cells = [(queries[row], query_labels[row])]
            cells += [(images[name][row, j], labels[name][row, j]) for j in range(k)]
            for j, (image, label) in enumerate(cells):
                x = pad + j * cell_w + (gap if j else 0)
                canvas[y : y + h, x : x + w] = image
                colour = "black" if label == query_labels[row] else MISMATCH_COLOUR
                ax.text(x + w / 2, y - 1, _name(class_names, label), color=colour, fontsize=6,
                        ha="center", va="bottom")  # fmt: skip
                if colour != "black":
                    ax.add_patch(Rectangle((x - 1.5, y - 1.5), w + 2, h + 2, fill=False,
                                           edgecolor=colour, linewidth=1.5))  # fmt: skip
        ax.imshow(canvas, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{name}: query | top-{k} train neighbours" if name else "query | neighbours")
    return _maybe_save(fig, save)


def _unit_rgb(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 or [0, 1] images ``(..., C, H, W)``, C in {1, 3} -> float32 ``(..., H, W, 3)``."""
    x = _as_numpy(images)
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    x = np.moveaxis(x, -3, -1)  # (..., C, H, W) -> (..., H, W, C)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x  # (..., H, W, 3)


def _name(class_names: Sequence[str] | None, label: int) -> str:
    return str(label) if class_names is None else class_names[int(label)]


# -- training curves ----------------------------------------------------------------------
def read_metrics(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Logged scalars as ``{name: (steps, values)}``, blanks and NaNs dropped.

    Args:
        path: a Lightning ``CSVLogger`` ``metrics.csv``, or a TensorBoard event file or the
            folder holding it (LightningCLI's default logger when ``tensorboard`` is installed).
            In the CSV, Lightning writes one row per logging call and leaves the other columns
            empty, so every column keeps only its own rows; ``x`` is the ``step`` column.
    """
    path = Path(path)
    if path.suffix == ".csv" and path.is_file():
        return _read_csv(path)
    if path.exists() and (path.is_dir() or path.name.startswith("events.out.tfevents")):
        return _read_tensorboard(path)
    raise FileNotFoundError(
        f"no metrics at {path}: pass a CSVLogger metrics.csv or a TensorBoard event file/folder"
    )


def _read_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in rows[0] if rows else []:
        if name in ("step", "epoch"):
            continue
        points = [
            (float(row.get("step") or i), float(row[name]))
            for i, row in enumerate(rows)
            if row[name] not in ("", None) and math.isfinite(float(row[name]))
        ]
        if points:
            steps, values = np.array(points).T  # (P, 2) -> 2 x (P,)
            columns[name] = (steps, values)
    return columns


def _read_tensorboard(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in events.Tags()["scalars"]:
        points = [(e.step, e.value) for e in events.Scalars(tag) if math.isfinite(e.value)]
        if points and tag not in ("epoch", "step"):
            steps, values = np.array(points, dtype=np.float64).T  # (P, 2) -> 2 x (P,)
            columns[tag] = (steps, values)
    return columns


def find_metrics(ckpt_path: str | Path) -> Path | None:
    """The training log of the run that wrote ``ckpt_path``: a ``metrics.csv`` (preferred) or a
    TensorBoard event file in the checkpoint's folder or up to three folders above it."""
    folder = Path(ckpt_path).resolve().parent
    for d in [folder, *list(folder.parents)[:3]]:
        if (d / "metrics.csv").is_file():
            return d / "metrics.csv"
        if events := sorted(d.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
            return events[-1]
    return None


def curve_panel(column: str) -> str | None:
    """Which :data:`CURVE_PANELS` suffix a column belongs to (None: not plotted)."""
    name = column.removesuffix("_step").removesuffix("_epoch")
    if "knn" in name:
        return "knn_top1" if name.endswith(("top1", "acc")) else None
    return next((suffix for suffix, _ in CURVE_PANELS if name.endswith(suffix)), None)


def plot_training_curves(metrics: str | Path, save: str | Path | None = None) -> Figure:
    """Loss, contrastive accuracy, MI bound and (if logged) online kNN accuracy against step.

    Columns are matched by suffix (``train/loss``, ``val/cpc/acc``, ``train/mi_bound_nats``,
    ``val/knn_top1``, each with or without Lightning's ``_step``/``_epoch``); a panel appears
    only when some column matches it.

    Args:
        metrics: a Lightning ``metrics.csv`` or TensorBoard event file (see
            :func:`read_metrics`).
        save: write the figure there as PNG too.
    """
    columns = read_metrics(metrics)
    by_panel: dict[str, list[str]] = {suffix: [] for suffix, _ in CURVE_PANELS}
    for name in columns:
        if (suffix := curve_panel(name)) is not None:
            by_panel[suffix].append(name)
    shown = [(suffix, title) for suffix, title in CURVE_PANELS if by_panel[suffix]]
    if not shown:
        raise ValueError(
            f"{metrics} has no column ending in loss, acc, mi_bound_nats or knn_top1: "
            f"found {sorted(columns)}"
        )
    fig = Figure(figsize=(4 * len(shown), 3.2), layout="constrained")
    for ax, (suffix, title) in zip(
        fig.subplots(1, len(shown), squeeze=False)[0], shown, strict=True
    ):
        for name in by_panel[suffix]:
            steps, values = columns[name]
            ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, ms=3, label=name)
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=7)
    return _maybe_save(fig, save)


# -- per-class kNN ------------------------------------------------------------------------
def confusion_matrix(
    labels: np.ndarray | torch.Tensor, predictions: np.ndarray | torch.Tensor, num_classes: int
) -> np.ndarray:
    """Counts ``(C, C)``: row = true class, column = predicted class; sums to ``len(labels)``."""
    true, pred = _labels(labels, num_classes), _labels(predictions, num_classes)
    if true.shape != pred.shape:
        raise ValueError(f"labels {true.shape} and predictions {pred.shape} differ in shape")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes**2)  # (C*C,)
    return flat.reshape(num_classes, num_classes)  # (C*C,) -> (C, C)


def per_class_knn_table(
    labels: np.ndarray | torch.Tensor, predictions: Panels, class_names: Sequence[str]
) -> list[dict[str, str | int | float]]:
    """One row per class (then ``all``): ``{"class", "n", <panel name>: accuracy, ...}``.

    Args:
        labels: true classes ``(Q,)``.
        predictions: predicted classes ``(Q,)``, or ``{name: (Q,)}`` for a column per encoder
            (a single array gets the column ``"accuracy"``).
        class_names: name of each class index.

    Returns:
        Rows ready for :func:`format_table`; accuracy is ``nan`` for a class with no query.
    """
    panels = {name or "accuracy": p for name, p in _panels(predictions, len(labels)).items()}
    matrices = {name: confusion_matrix(labels, p, len(class_names)) for name, p in panels.items()}
    counts = next(iter(matrices.values())).sum(axis=1)  # (C,) queries per true class
    rows: list[dict[str, str | int | float]] = []
    for c, class_name in enumerate(class_names):
        row: dict[str, str | int | float] = {"class": class_name, "n": int(counts[c])}
        for name, m in matrices.items():
            row[name] = m[c, c] / counts[c] if counts[c] else math.nan
        rows.append(row)
    total = {name: np.trace(m) / max(1, m.sum()) for name, m in matrices.items()}
    rows.append({"class": "all", "n": int(counts.sum()), **total})
    return rows


def format_table(rows: Sequence[Mapping[str, str | int | float]]) -> str:
    """Plain-text table with a header; floats as percentages with one decimal."""

    def cell(value: str | int | float) -> str:
        if isinstance(value, float | np.floating):
            return "-" if math.isnan(value) else f"{100 * value:.1f}%"
        return str(value)

    header = list(rows[0])
    body = [[cell(row[key]) for key in header] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [[str(h) for h in header], ["-" * w for w in widths], *body]
    return "\n".join("  ".join(s.rjust(w) for s, w in zip(ln, widths, strict=True)) for ln in lines)


def confusion_matrix_figure(
    labels: np.ndarray | torch.Tensor,
    predictions: Panels,
    class_names: Sequence[str],
    save: str | Path | None = None,
) -> Figure:
    """Confusion matrices (one panel per encoder): colour = row-normalised recall, text = counts.

    Args:
        labels: true classes ``(Q,)``.
        predictions: predicted classes ``(Q,)`` or ``{name: (Q,)}``.
        class_names: name of each class index.
        save: write the figure there as PNG too.
    """
    panels, c = _panels(predictions, len(labels)), len(class_names)
    side = 1.2 + 0.42 * c
    fig = Figure(figsize=(side * len(panels) + 0.5, side + 0.6), layout="constrained")
    for ax, (name, pred) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True
    ):
        counts = confusion_matrix(labels, pred, c)
        recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # rows sum to 1
        ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(counts):
            colour = "white" if recall[i, j] > 0.5 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=colour)
        accuracy = np.trace(counts) / max(1, counts.sum())
        ax.set_title(f"{name}: kNN top-1 {100 * accuracy:.1f}%" if name else f"{accuracy:.1%}")
        ax.set(xlabel="predicted", ylabel="true", xticks=range(c), yticks=range(c))
        ax.set_xticklabels(class_names, rotation=90, fontsize=7)
        ax.set_yticklabels(class_names, fontsize=7)
    return _maybe_save(fig, save)


# -- from a checkpoint to the figures ------------------------------------------------------
# cpc.data, cpc.eval and cpc.checkpoint import Lightning (seconds): imported in the functions
# below so that the plots above stay light.
DATASET_MODULES = {
    "fashion_mnist": "FashionMNISTDataModule",
    "mnist": "MNISTDataModule",
    "cifar10": "CIFAR10DataModule",
    "stl10": "STL10DataModule",
}


@dataclass
class FeatureSample:
    """Sampled query (test) and bank (train) images with every encoder's features.

    Attributes:
        class_names: name of each class index.
        query_images: uint8 ``(Q, C, H, W)``; query_labels: ``(Q,)``.
        bank_images: uint8 ``(N, C, H, W)``; bank_labels: ``(N,)``.
        query_features: ``{encoder name: (Q, F)}``; bank_features: ``{encoder name: (N, F)}``.
    """

    class_names: list[str]
    query_images: torch.Tensor
    query_labels: np.ndarray
    bank_images: torch.Tensor
    bank_labels: np.ndarray
    query_features: dict[str, np.ndarray]
    bank_features: dict[str, np.ndarray]


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a file, else the newest ``last.ckpt`` (or newest ``*.ckpt``) under it."""
    path = Path(path)
    if path.is_file():
        return path
    ckpts = sorted(path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime) if path.is_dir() else []
    if not ckpts:
        raise FileNotFoundError(
            f"no checkpoint at {path}: pass a .ckpt file or a run folder holding one "
            "(`make run` trains one)"
        )
    return ([p for p in ckpts if p.name == "last.ckpt"] or ckpts)[-1]


def random_init_like(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``encoder`` with fresh weights: every submodule's ``reset_parameters()`` under
    ``seed``, the global RNG left as it was. The baseline that shows what training bought."""
    clone = copy.deepcopy(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return clone.eval()


def make_datamodule(
    data: Data,
    root: str | Path = "data",
    image_size: int = 28,
    channels: int = 1,
    test_root: str | None = None,
) -> ImageDataModule:
    """A prepared :mod:`cpc.data` module: ``fashion_mnist``, ``mnist``, ``cifar10``, ``stl10``
    (files under ``root``) or ``folder`` (``root/<class>/<image>``, resized to ``image_size``
    with ``channels``; ``test_root`` optional)."""
    import cpc.data

    if data == "folder":
        dm = cpc.data.ImageFolderDataModule(
            root=str(root), image_size=image_size, channels=channels, test_root=test_root
        )
    elif data in DATASET_MODULES:
        dm = getattr(cpc.data, DATASET_MODULES[data])(root=str(root))
    else:
        raise ValueError(f"data must be one of {[*DATASET_MODULES, 'folder']}, got {data!r}")
    dm.prepare_data()
    return dm


def sample_features(
    encoders: Mapping[str, nn.Module],
    datamodule: ImageDataModule,
    sample: int = 2000,
    bank: int = 10000,
    seed: int = 0,
    batch_size: int = 256,
    pooling: Literal["mean", "grid"] = "mean",
    progress: bool = True,
) -> FeatureSample:
    """Seeded random subsets of the test split (queries; the val split when there is no test
    split) and the train split (the kNN bank), and every encoder's pooled features of both,
    in one pass over each subset (:func:`cpc.eval.features.extract_feature_sets`).

    On a 2-core CPU the cost is the forward passes: ``(sample + bank) * len(encoders)`` images
    (about 100 s for 2000 + 10000 Fashion-MNIST images and two width-32 encoders); ``progress``
    shows a bar per subset.
    """
    try:
        queries = datamodule.dataset("test")
    except ValueError:  # an image folder without test_root
        log.warning("no test split: the queries come from the held-out val split")
        queries = datamodule.dataset("val")
    query_images, query_labels = _sample_images(queries, sample, seed)
    bank_images, bank_labels = _sample_images(datamodule.dataset("train"), bank, seed + 1)
    query_f = _features(encoders, query_images, query_labels, batch_size, pooling, progress)
    bank_f = _features(encoders, bank_images, bank_labels, batch_size, pooling, progress)
    return FeatureSample(
        list(datamodule.class_names), query_images, query_labels.numpy(),
        bank_images, bank_labels.numpy(), query_f, bank_f,
    )  # fmt: skip


def _sample_images(dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``min(n, len)`` items in dataset order: uint8 ``(n, C, H, W)`` and labels ``(n,)``."""
    if n < 1:
        raise ValueError(f"sample sizes must be >= 1, got {n}")
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    items = [dataset[int(i)] for i in perm[:n].sort().values]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def _features(
    encoders: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    pooling: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    from torch.utils.data import DataLoader, TensorDataset

    from cpc.eval.features import extract_feature_sets

    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size)
    features, _ = extract_feature_sets(encoders, loader, pooling, progress=progress)
    return {name: f.numpy() for name, f in features.items()}


def knn_predictions(sample: FeatureSample, k: int = 20) -> dict[str, np.ndarray]:
    """Each encoder's weighted-kNN class ``(Q,)`` for the queries, the bank as labelled set
    (:func:`cpc.eval.knn.knn_predict`, DINO's ``k=20``, ``T=0.07``)."""
    from cpc.eval.knn import knn_predict

    bank_labels = torch.from_numpy(sample.bank_labels)
    return {
        name: knn_predict(
            torch.from_numpy(sample.bank_features[name]),
            bank_labels,
            torch.from_numpy(sample.query_features[name]),
            num_classes=len(sample.class_names),
            k=k,
        )
        .argmax(dim=1)
        .numpy()
        for name in sample.query_features
    }


def neighbours_figure(
    sample: FeatureSample,
    queries: int = 8,
    k: int = 8,
    seed: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """:func:`neighbour_grid` for ``queries`` test images (classes in turn), one grid per
    encoder, neighbours searched in the train bank with faiss."""
    picked = pick_queries(sample.query_labels, queries, seed)  # (q,)
    images, labels = {}, {}
    for name, query_f in sample.query_features.items():
        idx = nearest_neighbours(sample.bank_features[name], query_f[picked], k)  # (q, k)
        images[name] = sample.bank_images[torch.from_numpy(idx)]  # (q, k, C, H, W)
        labels[name] = sample.bank_labels[idx]  # (q, k)
    return neighbour_grid(
        sample.query_images[torch.from_numpy(picked)],
        images,
        sample.query_labels[picked],
        labels,
        sample.class_names,
        save,
    )


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
    fs = sample_features(encoders, dm, sample, bank, seed)
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


# -- helpers ------------------------------------------------------------------------------
def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _maybe_save(fig: Figure, save: str | Path | None) -> Figure:
    if save is not None:
        save_figure(fig, save)
    return fig


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _panels(x: Panels, n: int) -> dict[str, np.ndarray]:
    """``{name: array}`` (a lone array is the panel ``""``), each with ``n`` rows."""
    panels = (
        {k: _as_numpy(v) for k, v in x.items()} if isinstance(x, Mapping) else {"": _as_numpy(x)}
    )
    if not panels:
        raise ValueError("got an empty mapping: pass an array or {name: array}")
    for name, array in panels.items():
        if len(array) != n:
            raise ValueError(f"panel {name!r} has {len(array)} rows but there are {n} labels")
    return panels


def _labels(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Integer labels as int64, checked to lie in ``[0, num_classes)``."""
    labels = _as_numpy(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (one per class name), "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def _normalised(features: np.ndarray | torch.Tensor) -> np.ndarray:
    x = np.ascontiguousarray(_as_numpy(features), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, F), got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _class_colours(num_classes: int) -> list:
    from matplotlib import colormaps

    name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "turbo"
    cmap = colormaps[name]
    if name == "turbo":
        return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]
    return [cmap(i) for i in range(num_classes)]


if __name__ == "__main__":
    main()
