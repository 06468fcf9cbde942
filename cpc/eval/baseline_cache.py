"""A cache of the report's baseline rows (random-init encoder, raw pixels) across runs.

The baselines depend only on the data, the architecture and the protocol, not on training, so
every run of a config would recompute the same numbers (half the report's cost or more). Their
scored rows are kept as small JSON files, one per key, in the folder ``$CPC_CACHE`` (default
``~/.cache/cpc``) under ``baselines/``. The key is a hash of:

- the data: every image and label of each eval split, in loader order (:func:`fingerprint`),
  and the data module's class;
- the architecture: the encoder's class, its ``repr`` and public attributes (``pool_size``,
  ...), and a hash of the random-init weights themselves (which also covers the protocol's
  seed and anything ``reset_parameters`` leaves untouched);
- the protocol (every :class:`~cpc.eval.protocol.EvalProtocol` field and the probe's settings),
  the reported split, and how features were made (device type, dtype);
- the code that computes the rows: a hash of the source of every module in
  :data:`EVAL_CODE` (features, subsets, kNN, index, probe, projection, the report's protocol),
  and the versions of torch, faiss and numpy (:func:`code_version`);
- :data:`VERSION`, raised whenever the meaning of a cached row changes.

Any change gives another key, so a stale row is never read; delete the folder to reclaim it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from torch import nn

from cpc.eval.report_io import write_report  # atomic JSON writer

#: raise when the features, kNN or probe change what a cached row means
VERSION = 1

#: the modules whose code computes a baseline row: an edit to any of them misses the cache
EVAL_CODE = (
    "cpc.data.subset",
    "cpc.eval.baselines",
    "cpc.eval.compact",
    "cpc.eval.features",
    "cpc.eval.index",
    "cpc.eval.knn",
    "cpc.eval.label_efficiency",
    "cpc.eval.linear_probe",
    "cpc.eval.protocol",
    "cpc.eval.report",
    "cpc.eval.scorer",
    "cpc.eval.split_features",
    "cpc.eval.storage",
    "cpc.eval.subsets",
    "cpc.models.encoder",
    "cpc.models.patches",
    "cpc.models.projection",
)


def cache_dir() -> Path:
    """``$CPC_CACHE/baselines`` (default ``~/.cache/cpc/baselines``)."""
    return Path(os.environ.get("CPC_CACHE", "~/.cache/cpc")).expanduser() / "baselines"


def fingerprint(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> str:
    """SHA-1 of every image and label ``loader`` yields, in order (one pass, no model)."""
    digest = hashlib.sha1()
    for images, labels in loader:
        digest.update(images.contiguous().cpu().numpy().tobytes())
        digest.update(labels.long().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def architecture(encoder: nn.Module) -> dict[str, Any]:
    """What the random-init baseline depends on: ``encoder`` should be that random-init copy."""
    weights = hashlib.sha1()
    for name, tensor in encoder.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    attributes = {
        key: str(value)
        for key, value in vars(encoder).items()
        if not key.startswith("_") and key != "training"
    }
    return {
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "repr": repr(encoder),
        "attributes": attributes,
        "weights": weights.hexdigest(),
    }


def code_version(modules: Iterable[str] | None = None) -> dict[str, str]:
    """SHA-1 of the source files of ``modules`` (default :data:`EVAL_CODE`, in order) and the
    versions of the libraries the rows are computed with: a changed function or an upgrade
    gives another key."""
    digest = hashlib.sha1()
    for name in EVAL_CODE if modules is None else modules:
        digest.update(name.encode())
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return {
        "code": digest.hexdigest(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


class BaselineCache:
    """Rows of the report kept under a key (see the module docstring).

    Args:
        folder: where the JSON files live; default :func:`cache_dir`.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir()

    @staticmethod
    def key(**parts: Any) -> dict[str, Any]:
        """The key: ``parts`` (JSON-able) plus :data:`VERSION` and :func:`code_version`."""
        return {"version": VERSION, **code_version(), **parts}

    def path(self, key: Mapping[str, Any]) -> Path:
        text = json.dumps(key, sort_keys=True, default=str)
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"

    def load(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The value stored under ``key``, None when absent or unreadable."""
        path = self.path(key)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        same = json.dumps(stored.get("key"), sort_keys=True, default=str) == json.dumps(
            key, sort_keys=True, default=str
        )
        return stored.get("value") if same else None

    def save(self, key: Mapping[str, Any], value: Mapping[str, Any]) -> Path:
        """Store ``value`` under ``key`` (atomically); returns the file."""
        return write_report({"key": key, "value": value}, self.path(key))
