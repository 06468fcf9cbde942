"""Evaluation of a frozen encoder: features, weighted kNN, a linear probe, callbacks, a report.

protocol.py (the settings: k, T, pooling, standardisation, probe, seed; one dataclass) ->
features.py (encoder -> pooled features, once per split; kept in RAM or memory-mapped files by
storage.py; subsets.py draws seeded subsets of a split, compact.py applies the encoder's
compact projection to stored features; split_features.py extracts every split) -> knn.py
(over index.py's faiss index) / linear_probe.py (pure functions on features) -> scorer.py (both
of one model, and the few-label budgets of label_efficiency.py) -> report.py (the encoder
against baselines.py's random-init and pixel rows; report_io.py prints and saves it) ->
callbacks.py (online kNN during training, the report at the end of fit).
"""

import importlib
from typing import Any

#: public name -> submodule; imported on first use, so ``import cpc.eval.features`` loads
#: neither faiss (knn) nor torchmetrics (linear_probe) nor Lightning (callbacks)
_EXPORTS = {
    "EvaluationReport": "callbacks",
    "OnlineKNN": "callbacks",
    "extract_feature_sets": "features",
    "extract_features": "features",
    "pixel_features": "features",
    "pool_grid": "features",
    "KNN": "knn",
    "LinearHeads": "linear_probe",
    "linear_probe": "linear_probe",
    "EvalData": "protocol",
    "EvalProtocol": "protocol",
    "evaluate": "report",
    "format_report": "report_io",
    "random_init": "baselines",
    "write_report": "report_io",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cpc.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cpc.eval.{_EXPORTS[name]}"), name)


__all__ = [
    "EvalData",
    "EvalProtocol",
    "EvaluationReport",
    "KNN",
    "LinearHeads",
    "OnlineKNN",
    "evaluate",
    "extract_feature_sets",
    "extract_features",
    "format_report",
    "linear_probe",
    "pixel_features",
    "pool_grid",
    "random_init",
    "write_report",
]
