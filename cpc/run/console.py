"""What ``cpc`` prints: one line per error, and Lightning's start-up quieted to what a user needs.

- :class:`OneLineErrors`: a command-line parser whose errors are one line naming the option
  and what to give it, plus a hint to ``--help`` (not ~80 lines of usage first);
  ``CPC_DEBUG=1`` prints jsonargparse's full message and usage instead.
- :func:`error_line`: the one line ``cpc`` prints for an exception about the user's input or
  machine (bad values, missing files, a full disk, ...), or None for a bug (a traceback).
- :func:`run_with_one_line_errors`: runs a command's main, ending it with that line.
- :func:`quiet_lightning`: drops the lines of a fit's start that say nothing about this run
  (seed notice, logger and model-registry adverts, TPU/GPU availability, a deprecation warning
  Lightning raises against itself). Warnings that ask for a change (``GPU available but not
  used``, few workers, ...) and the model summary stay.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

import yaml
from jsonargparse import ArgumentParser
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cpc.data.datasets import DatasetNotFoundError

#: exceptions whose message is meant for the user: printed as one line, no traceback
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FloatingPointError,
    DatasetNotFoundError,
    MisconfigurationException,
    yaml.YAMLError,
)

#: Lightning info lines (logger ``lightning.pytorch.utilities.rank_zero``) that are dropped
NOISE = re.compile(
    r"^(GPU|TPU|HPU|IPU) available:|^💡 Tip:|^Loading `train_dataloader` to estimate"
)


def debug() -> bool:
    """``CPC_DEBUG=1``: tracebacks and jsonargparse's full messages."""
    return bool(os.environ.get("CPC_DEBUG"))


class OneLineErrors:
    """Mixin for a jsonargparse parser: a parse error is one line on stderr, exit status 2.

    ``cpc fit: error: --model.lr: got nan, give a finite number (cpc fit --help lists every
    option)`` instead of the usage of every option followed by a nested dump.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug():  # inner parsers raise; CPC_DEBUG: full output
            super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        line = parse_error_line(message, [a.dest for a in parser._actions])
        sys.stderr.write(f"{prog}: error: {line} ({prog} --help lists every option)\n")
        self.exit(2)  # type: ignore[attr-defined]


class CLIParser(OneLineErrors, LightningArgumentParser):
    """``cpc fit``'s parser (LightningCLI's ``parser_class``)."""


class Parser(OneLineErrors, ArgumentParser):
    """``cpc eval``'s parser."""


def parse_error_line(message: str, options: list[str] = ()) -> str:
    """jsonargparse's (often nested, many-line) message -> one line naming the option.

    Args:
        message: what jsonargparse passes to ``ArgumentParser.error``.
        options: the parser's option names, for a "did you mean" on an unknown one.
    """
    if match := re.search(r"unrecognized arguments: (.*)|does not accept option '(.*)'", message):
        given = (match.group(1) or "--" + match.group(2)).split()
        unknown = [arg.split("=")[0] for arg in given if arg.startswith("--")]
        close = [c for u in unknown for c in difflib.get_close_matches(u[2:], options, n=1)]
        hint = f": did you mean --{close[0]}?" if close else ""
        return f"unknown option {' '.join(unknown) or ' '.join(given)}{hint}"
    if match := re.search(r"File does not exist: (.*)", message):
        return f"config file not found: {match.group(1).strip()}"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    key = "--" + ".".join(dict.fromkeys(keys)) if keys else ""
    if line := nested_error_line(message, key):
        return line
    if match := re.search(r"Expected a <class '(\w+)'>\. Got value: (.*)", message):
        kind, value = match.group(1), match.group(2).strip()
        if kind == "float" and value.lower().lstrip("+-.") in ("nan", "inf", "infinity"):
            return f"{key}: got {value}, give a finite number"
        return f"{key}: expected {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {value!r}"
    if "Given value:" in message and "Literal[" in message:
        value = re.search(r"Given value: (.*)", message).group(1).strip()
        choices = re.findall(r"Literal\[(.*?)\]", message.split("Errors:")[0])
        allowed = ", ".join(dict.fromkeys(c.strip() for cs in choices for c in cs.split(",")))
        return f"{key}: got {value!r}, choose one of {allowed}"
    return one_line(message)


def nested_error_line(message: str, key: str) -> str | None:
    """The line for an error inside a class's options (a data module's, a task's), which
    jsonargparse nests in a dump of every type the value could have had; None if none is."""
    pattern = r"Problem with given class_path '([\w.]+)':\s*Option '(\w+)' is not accepted"
    if match := re.search(pattern, message):
        class_path, option = match.groups()
        close = difflib.get_close_matches(option, init_parameters(class_path), n=1)
        hint = f": did you mean {key}.{close[0]}?" if close else ""
        return f"unknown option {key}.{option}{hint}"
    if match := re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message):
        module, name = match.groups()
        names = [n for n in dir(sys.modules.get(module)) if not n.startswith("_")]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f": did you mean {module}.{close[0]}?" if close else ""
        return f"{key}: there is no class {module}.{name}{hint}"
    if match := re.search(r"Expected a typing\.Literal\[(.*?)\]\. Got value: ([^\s.]+)", message):
        return f"{key}: got {match.group(2)!r}, choose one of {match.group(1)}"
    return None


def union_error(message: str) -> str | None:
    """``Does not validate against any of the Union subtypes ... Errors: - <why> - Expected a
    <class 'NoneType'> ...`` (a class's own ValueError, wrapped by jsonargparse) -> ``<why>``."""
    pattern = r"Errors:\s*- (.*?)\s*- Expected a <class 'NoneType'>"
    if "Union subtypes" in message and (match := re.search(pattern, message, re.DOTALL)):
        return one_line(match.group(1))
    return None


def init_parameters(class_path: str) -> list[str]:
    """The ``__init__`` parameter names of ``class_path`` and its bases (none if unknown)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for base in cls.__mro__:
        if "__init__" in vars(base):
            with_self = inspect.signature(vars(base)["__init__"]).parameters
            names += [n for n, p in with_self.items() if n != "self" and p.kind <= p.KEYWORD_ONLY]
    return list(dict.fromkeys(names))


#: torch's optimizer errors -> the option that sets the value
OPTIMIZER_ERRORS = {
    "Invalid learning rate": "--model.lr",
    "Invalid weight_decay value": "--model.weight_decay",
}


def one_line(message: str, limit: int = 400) -> str:
    """Whitespace (newlines included) collapsed to single spaces, cut at ``limit`` characters."""
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_line(err: BaseException) -> str | None:
    """The one line ``cpc`` prints for ``err``, or None when it is not about the user's input
    or machine (a bug: the traceback is shown)."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return (
            f"no space left on the device writing {err.filename or 'the run'}: free some space "
            "(or set trainer.default_root_dir on another disk) and resume with --ckpt_path "
            "<run folder>/checkpoints/last.ckpt"
        )
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write {err.filename}: {err.strerror}: set a writable trainer.default_root_dir"
        )
    if isinstance(err, USER_ERRORS):
        text = str(err)
        for start, option in OPTIMIZER_ERRORS.items():
            if text.startswith(start + ": "):
                value = text.removeprefix(start + ": ")
                return f"{option} {value}: give a value >= 0 (e.g. {option} 0.001)"
        return union_error(text) or one_line(err)
    child = type(err).__name__ == "ProcessRaisedException"  # a ddp_spawn worker's error
    if child and (last := str(err).strip().splitlines()[-1:]):
        name, _, text = last[0].partition(": ")
        if name.rsplit(".", 1)[-1] in {e.__name__ for e in USER_ERRORS}:
            return one_line(text)
    return None


class QuietStart(Callback):
    """:func:`quiet_lightning` in every process of a fit: ``ddp_spawn`` starts fresh ones."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        quiet_lightning()


class ProgressBar(RichProgressBar):
    """Rich's progress bar, reading "Epoch 3" where a run bounded by ``max_steps`` (Lightning's
    ``max_epochs`` -1) would read "Epoch 3/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not NOISE.search(record.getMessage())


def run_with_one_line_errors(main: Callable[[], object], prog: str) -> None:
    """Run ``main``; an error about the user's input or machine (:func:`error_line`) ends the
    process with ``<prog>: error: <line>`` and status 1, a bug (or ``CPC_DEBUG=1``) raises; a
    fit stopped by a signal exits with status 1 too (Lightning's exception would give 0)."""
    try:
        main()
    except SIGTERMException:  # a fit stopped by SIGTERM or Ctrl-C (it said where it saved)
        sys.exit(1)
    except Exception as err:
        line = error_line(err)
        if line is None or debug():
            raise
        sys.exit(f"{prog}: error: {line} (CPC_DEBUG=1 shows the traceback)")


def quiet_lightning() -> None:
    """Drop Lightning's start-up lines that say nothing about this run (idempotent).

    The seed is in the run's ``config.yaml`` (``seed_everything``); the logger's folder is
    printed by the checkpoint callback and the report.
    """
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    # Lightning calls torch's deprecated LeafSpec check itself; nothing for the user to change
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # the parameter count is right; only its size in MB assumes 32 bits (precision auto: bf16)
    warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model")
