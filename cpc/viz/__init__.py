"""See what an encoder learned: 2-D maps, nearest neighbours, training curves, per-class kNN.

The plots behind ``notebooks/embeddings.ipynb`` and its plain-script twin
``python -m cpc.viz --ckpt_path CKPT --out figures`` (the run's own data, or ``--data
cpc.data.MNISTDataModule --data.root data`` as in ``cpc fit``), one module per kind of figure:

- :mod:`~cpc.viz.embedding`: :func:`embedding_map`, the features in 2-D, coloured by class:
  UMAP (McInnes et al., 2018) when ``umap-learn`` is installed, else t-SNE (van der Maaten &
  Hinton, 2008) from scikit-learn, else PCA (numpy); the method is in the title.
- :mod:`~cpc.viz.neighbours`: :func:`neighbour_grid`, query images, each followed by its top-k
  neighbours from the train set (:meth:`cpc.eval.knn.KNN.neighbours`, the report's kNN
  search); neighbours of another class get a red frame.
- :mod:`~cpc.viz.curves`: :func:`plot_training_curves`, loss, contrastive accuracy, the InfoNCE
  mutual-information bound ``log N - L`` (van den Oord et al., 2018, eq. 10) and the online kNN
  accuracy, from a run's ``metrics.csv`` (or its TensorBoard events).
- :mod:`~cpc.viz.classes`: :func:`per_class_knn_table` and :func:`confusion_matrix_figure`, the
  weighted kNN classifier of Wu et al. (2018) / DINO (:class:`cpc.eval.knn.KNN`), class
  by class.
- :mod:`~cpc.viz.labels`: :func:`label_efficiency_figure`, test accuracy against labels per
  class (log axis), from a report's label budgets (:func:`report_curves`) or the benchmark's.
- :mod:`~cpc.viz.sample`: from a checkpoint and a data module (the run's own by default) to a
  :class:`FeatureSample` (images, labels and every encoder's features, by
  :mod:`cpc.eval.features`) that the figures take.
- :mod:`~cpc.viz.script`: :func:`run` writes every figure for one checkpoint; :func:`main` is
  its command line (``python -m cpc.viz``, :mod:`cpc.viz.__main__`).
- :mod:`~cpc.viz._common`: the ``Panels`` input and PNG saving, shared by the figures.

Every figure function takes one array or a ``{name: array}`` mapping, drawing one panel per
name, so a trained encoder sits side by side with a randomly initialised copy
(:func:`random_init_like`): the gap between them is what pretraining bought.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot, so nothing here needs a
display or touches a global backend (``savefig`` renders PNGs with Agg); Jupyter shows a Figure
that ends a cell. matplotlib, scikit-learn and umap-learn come with ``pip install -e
'.[notebook]'``; ``cpc`` itself never imports this package.

Shape letters: ``N`` train-bank images, ``Q`` query (test) images, ``F`` feature size,
``k`` neighbours, ``C`` classes (``C`` is also image channels in ``(C, H, W)``).
"""

from cpc.checkpoint import resolve_checkpoint, run_datamodule, run_protocol
from cpc.viz._common import Panels, save_figure
from cpc.viz.classes import (
    confusion_matrix,
    confusion_matrix_figure,
    format_table,
    knn_predictions,
    per_class_knn_table,
)
from cpc.viz.curves import (
    CURVE_PANELS,
    curve_panel,
    find_metrics,
    plot_training_curves,
    read_metrics,
)
from cpc.viz.embedding import Method, embed_2d, embedding_map
from cpc.viz.labels import label_efficiency_figure, report_curves
from cpc.viz.neighbours import (
    MISMATCH_COLOUR,
    neighbour_grid,
    neighbours_figure,
    pick_queries,
)
from cpc.viz.sample import FeatureSample, random_init_like, sample_features
from cpc.viz.script import main, run

__all__ = [
    "label_efficiency_figure",
    "report_curves",
    "CURVE_PANELS",
    "MISMATCH_COLOUR",
    "FeatureSample",
    "Method",
    "Panels",
    "confusion_matrix",
    "confusion_matrix_figure",
    "curve_panel",
    "embed_2d",
    "embedding_map",
    "find_metrics",
    "format_table",
    "knn_predictions",
    "main",
    "neighbour_grid",
    "neighbours_figure",
    "per_class_knn_table",
    "pick_queries",
    "plot_training_curves",
    "random_init_like",
    "read_metrics",
    "resolve_checkpoint",
    "run",
    "run_datamodule",
    "run_protocol",
    "sample_features",
    "save_figure",
]
