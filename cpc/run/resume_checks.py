"""Checks of ``cpc fit --ckpt_path``, before anything is built: what the checkpoint holds
against what the command asks for.

- :func:`architecture_changes`: the model options (encoder, tasks) that differ from the run's
  (options only one side knows, from another version of the code, are not compared);
  a changed architecture cannot load the weights, so resuming refuses it in one line (the
  optimizer's ``lr`` or ``weight_decay`` may change).
- :func:`nothing_left`: a finished run resumed without more ``max_steps``/``max_epochs``
  trains nothing: say so instead of exiting 0.
- :func:`run_version`: a checkpoint inside ``<save_dir>/<name>/version_N/checkpoints/`` resumes
  its logs in ``version_N`` (curves whole), not in a new folder.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

#: model options that make the architecture (weights of another shape or meaning)
ARCHITECTURE = ("encoder", "tasks")


def architecture_changes(saved: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """``["model.encoder.init_args.width: 32 in the checkpoint, 64 now", ...]``: the options
    under :data:`ARCHITECTURE` where the checkpoint's hyperparameters ``saved`` and the
    command's ``model`` section differ (none when the checkpoint holds no model config)."""
    changes = []
    for key in ARCHITECTURE:
        if not _is_class_path_config(saved.get(key)):
            continue
        old = _flatten(saved.get(key), f"model.{key}")
        new = _flatten(model.get(key), f"model.{key}")
        for name in sorted(old.keys() | new.keys()):
            before, now = old.get(name), new.get(name)
            if name.endswith("class_path"):  # the same class may be named by two paths
                before, now = _qualified(before), _qualified(now)
            elif name not in old or name not in new:
                continue  # an option added or removed by another version of the code
            if before != now:
                changes.append(f"{name}: {before} in the checkpoint, {now} now")
    return changes


def nothing_left(checkpoint: dict[str, Any], max_steps: int | None, max_epochs: int | None) -> str:
    """Why the trainer's limits leave nothing to train after ``checkpoint`` ("" if they don't).

    ``max_steps`` -1/None and ``max_epochs`` -1 mean no limit; with neither limit Lightning
    trains 1000 epochs. Finished epochs come from the data module's saved position (a run
    stopped by ``max_steps`` counts its epoch as finished, as Lightning does).
    """
    step = checkpoint["global_step"]
    epochs = finished_epochs(checkpoint)
    if max_steps is not None and max_steps >= 0 and step >= max_steps:
        return f"it is at step {step} and trainer.max_steps is {max_steps}: raise trainer.max_steps"
    if max_epochs is None and (max_steps is None or max_steps < 0):
        max_epochs = 1000
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return (
            f"it finished {epochs} epoch(s) (step {step}) and trainer.max_epochs is "
            f"{max_epochs}: raise trainer.max_epochs (or set it to -1 to stop at "
            "trainer.max_steps only)"
        )
    return ""


def finished_epochs(checkpoint: dict[str, Any]) -> int:
    """Epochs the run finished: from the data module's state (``{"epoch", "start"}``, the next
    position in the data) when there is one, else Lightning's epoch counter."""
    for value in checkpoint.values():
        if isinstance(value, dict) and {"seed", "epoch", "start"} <= value.keys():
            return value["epoch"]
    return checkpoint.get("epoch", 0)


def run_version(ckpt_path: str | os.PathLike, save_dir: str | os.PathLike, name: str) -> str | None:
    """``"version_N"`` when ``ckpt_path`` is ``<save_dir>/<name>/version_N/checkpoints/*.ckpt``
    (a run of this logger's folder), else None (a new version is made)."""
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name == "checkpoints" and run.parent == (Path(save_dir) / name).resolve():
        return run.name
    return None


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"p.a.b": 1, "p.c.0": 2}`` (tuples as lists)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        items = enumerate(value)
    else:
        return {prefix: list(value) if isinstance(value, tuple) else value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}.{key}"))
    return flat


def _qualified(class_path: str | None) -> str | None:
    """``"cpc.models.ResNetEncoder"`` -> ``"cpc.models.encoder.ResNetEncoder"`` (where the class
    is defined); unchanged when it cannot be imported."""
    if class_path is None:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return class_path
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_class_path_config(value: Any) -> bool:
    """A config (class_path dicts, lists of them), not missing or a live object's placeholder."""
    if isinstance(value, list):
        return all(_is_class_path_config(item) for item in value)
    return isinstance(value, dict)
