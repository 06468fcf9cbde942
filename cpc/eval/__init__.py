"""Evaluation of a frozen encoder on precomputed features: weighted kNN and a linear probe."""

from cpc.eval.knn import knn_accuracy, knn_predict
from cpc.eval.linear_probe import LinearClassifier, linear_probe

__all__ = ["LinearClassifier", "knn_accuracy", "knn_predict", "linear_probe"]
