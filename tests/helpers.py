"""Plain helpers the tests import (``from helpers import fit_args``); fixtures live in conftest.py.

The one place ``cpc fit`` arguments are built: :func:`fit_args` (and :func:`data_args`, its data
part, which ``cpc eval`` takes too).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

#: data module options of :func:`data_args`: a tiny grayscale image folder (``data.root`` added)
DATA = {
    "data": "cpc.data.ImageFolderDataModule",
    "data.image_size": 28,
    "data.channels": 1,
    "data.batch_size": 8,
    "data.val_size": 0.25,
}

#: the rest of :func:`fit_args`: a width-8 encoder, one epoch on the CPU, no end-of-fit report
#: (``trainer.default_root_dir`` added)
FIT = {
    "model.encoder": "cpc.models.encoder.ResNetEncoder",
    "model.encoder.width": 8,
    "trainer.max_epochs": 1,
    "trainer.accelerator": "cpu",
    "trainer.enable_progress_bar": "false",
    "report.enabled": "false",
}

#: :func:`quick_fit_args`: one val batch, no logger, no online kNN
QUICK = {
    "trainer.limit_val_batches": 1,
    "trainer.logger": "false",
    "online_knn.every_n_epochs": 0,
}


def options(values: dict[str, Any]) -> list[str]:
    """``{"a.b": 1, "c": None}`` -> ``["--a.b=1"]``: a None value drops the option."""
    return [f"--{key}={value}" for key, value in values.items() if value is not None]


def data_args(folder: Path, **overrides: Any) -> list[str]:
    """``--data...`` options for the image folder ``folder`` (:data:`DATA`); ``overrides``
    replace or add options (``**{"data.test_root": path}``), a None value drops one."""
    return options({"data": DATA["data"], "data.root": folder, **DATA, **overrides})


def fit_args(
    folder: Path,
    out: Path,
    *extra: str,
    config: Path | Sequence[Path] | None = None,
    **overrides: Any,
) -> list[str]:
    """``cpc fit`` on the image folder ``folder`` with a width-8 encoder (:data:`DATA`,
    :data:`FIT`): 2 steps on ``tiny_folder``, no end-of-fit report, logs under ``out``.

    Args:
        folder: the train images, ``folder/<class>/<image>``.
        out: ``trainer.default_root_dir``.
        extra: arguments appended as given (they win over everything before them).
        config: a config file, or several layered in order (``[full, task fragment]``), read
            first (so every other argument overrides them).
        overrides: options replaced where they stand or added, ``**{"report.k": 5}``; a None
            value drops one (``**{"model.encoder": None}`` keeps the config's encoder).
    """
    data = {key: overrides.pop(key) for key in list(overrides) if key.startswith("data")}
    fit = {**FIT, "trainer.default_root_dir": out, **overrides}
    configs = [] if config is None else [config] if isinstance(config, Path | str) else config
    head = ["fit", *(f"--config={c}" for c in configs)]
    return [*head, *data_args(folder, **data), *options(fit), *extra]


def quick_fit_args(
    folder: Path, out: Path, *extra: str, config: Path | Sequence[Path] | None = None
) -> list[str]:
    """:func:`fit_args` with one val batch, no logger, no online kNN (:data:`QUICK`)."""
    return fit_args(folder, out, *extra, config=config, **QUICK)


def write_image_folder(root: Path, classes=("a", "b"), per_class=12, size=28, mode="L") -> Path:
    """A small ImageFolder of random images: ``root/<class>/<i>.png``."""
    rng = np.random.default_rng(0)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / cls / f"{i}.png")
    return root


#: the repository's root, where ``benchmarks/`` lies
ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_with(encoder, datamodule, *, baselines=True, device=None, progress=True, **protocol):
    """:func:`cpc.eval.report.evaluate` with the protocol's fields as keywords (``k=5``, ...)."""
    from cpc.eval.protocol import EvalProtocol
    from cpc.eval.report import evaluate

    return evaluate(
        encoder,
        datamodule,
        EvalProtocol(**{k: v for k, v in protocol.items() if k != "cache"}),
        baselines=baselines,
        device=device,
        progress=progress,
        cache=protocol.get("cache", True),
    )


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` (``cpc.eval.knn.KNN.fit``) is an importable module or an attribute
    path below one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False
