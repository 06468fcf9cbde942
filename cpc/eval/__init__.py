"""Evaluation of a frozen encoder: features, weighted kNN, a linear probe, callbacks, a report.

protocol.py (the settings: k, T, pooling, standardisation, probe, seed; one dataclass) ->
features.py (encoder -> pooled features, once per split) -> knn.py / linear_probe.py (pure
functions on features) -> report.py (both, against random-init and pixel baselines) ->
callbacks.py (online kNN during training, the report at the end of fit).
"""

from cpc.eval.callbacks import EvaluationReport, OnlineKNN
from cpc.eval.features import extract_feature_sets, extract_features, pixel_features, pool_grid
from cpc.eval.knn import knn_accuracy, knn_predict
from cpc.eval.linear_probe import LinearClassifier, linear_probe
from cpc.eval.protocol import EvalData, EvalProtocol
from cpc.eval.report import evaluate, evaluate_encoder, format_report, random_init, write_report

__all__ = [
    "EvalData",
    "EvalProtocol",
    "EvaluationReport",
    "LinearClassifier",
    "OnlineKNN",
    "evaluate",
    "evaluate_encoder",
    "extract_feature_sets",
    "extract_features",
    "format_report",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "pixel_features",
    "pool_grid",
    "random_init",
    "write_report",
]
