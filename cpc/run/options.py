"""Command-line options that moved or are set from another option: refused in one line
naming the option to use, before LightningCLI would ignore or override them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: options that moved: old key (or section) -> where it is now; an old one is a one-line error
RENAMED = {
    "online_knn.k": "report.k",
    "online_knn.temperature": "report.temperature",
    "online_knn.pooling": "report.pooling",
    "online_knn.standardize": "report.knn_standardize",
    # the old ModelCheckpoint section (checkpoint.every_n_* now set PeriodicCheckpoint's interval)
    **{
        f"checkpoint.{key}": "trainer.callbacks (ModelCheckpoint; --print_config shows it)"
        for key in ("monitor", "mode", "save_top_k", "save_last", "dirpath", "filename")
    },
    "lr_monitor": "trainer.callbacks (LearningRateMonitor; --print_config shows it)",
}


#: classes that moved: old class_path -> new (the config.yaml of older runs names the old one)
MOVED = {
    "cpc.checkpoint_io.PeriodicCheckpoint": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
    "cpc.checkpoint_io.AtomicCheckpointIO": "cpc.run.checkpoint_files.AtomicCheckpointIO",
    "cpc.loggers.RunLogger": "cpc.run.loggers.RunLogger",
}

#: options set from another by a link: giving them would be silently overridden
LINKED = {
    "trainer.logger.save_dir": "trainer.default_root_dir",
    "trainer.logger.init_args.save_dir": "trainer.default_root_dir",
}


def reject_renamed(args: list[str]) -> None:
    """Raise a one-line ValueError naming the new key when ``args`` or a ``--config`` file
    they name sets an option of :data:`RENAMED`, or one of :data:`LINKED` (the option that
    sets it instead), or names a class of :data:`MOVED`."""
    given: set[str] = set()
    for i, arg in enumerate(args):
        key, _, value = arg.removeprefix("--").partition("=")
        given.add(key)
        _reject_moved(arg, "the command line")
        if key in ("-c", "config"):
            path = value or (args[i + 1] if i + 1 < len(args) else "")
            if Path(path).is_file():
                config = read_yaml(Path(path))
                given |= _dotted_keys(config)
                _reject_moved(config, path)
    for key in sorted(given):
        old = next((old for old in RENAMED if key == old or key.startswith(old + ".")), None)
        if old is not None:
            raise ValueError(f"{key} was renamed: use {RENAMED[old]}")
        if key in LINKED:
            raise ValueError(
                f"{key} is set from {LINKED[key]} (the run folder is <{LINKED[key]}>/"
                f"lightning_logs/version_N): use --{LINKED[key]}"
            )


def read_yaml(path: Path) -> Any:
    """The YAML file ``path``, or a one-line ValueError naming the file, line and problem."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise ValueError(f"{path}{where}: {problem}: fix the YAML syntax") from err


def _reject_moved(value: Any, where: str) -> None:
    """A one-line ValueError naming every class of :data:`MOVED` that ``value`` (a string, or
    a config's nested values) names, and where each is now."""
    found = sorted(_moved_in(value))
    if found:
        replace = ", ".join(f"{old} by {MOVED[old]}" for old in found)
        raise ValueError(f"classes moved: in {where}, replace {replace}")


def _moved_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_moved_in(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_moved_in(item) for item in value))
    return {old for old in MOVED if isinstance(value, str) and old in value}


def _dotted_keys(config: Any, prefix: str = "") -> set[str]:
    """``{"a": {"b": 1}}`` -> ``{"a", "a.b"}``."""
    if not isinstance(config, dict):
        return set()
    keys = set()
    for key, value in config.items():
        keys |= {prefix + str(key), *_dotted_keys(value, f"{prefix}{key}.")}
    return keys
