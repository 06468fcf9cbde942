"""The fit's LightningCLI: ``cpc fit``'s default callbacks, logger and checkpoint writer, the
``auto`` precision, and the checks of ``--ckpt_path`` before a resumed fit starts (its
architecture, what is left to train, its run folder)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Literal

import lightning.pytorch as L
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.pytorch.callbacks import Checkpoint, LearningRateMonitor
from lightning.pytorch.callbacks import ProgressBar as PB
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from cpc.eval.callbacks import EvaluationReport, OnlineKNN
from cpc.module import CPCModule
from cpc.run.console import ProgressBar
from cpc.run.periodic_checkpoint import PeriodicCheckpoint
from cpc.run.precision import auto_precision
from cpc.run.preflight import check_fit
from cpc.run.resume_checks import architecture_changes, nothing_left, run_version
from cpc.run.run_folder import discard_unstarted
from cpc.run.step_memory import check_step_memory
from cpc.run.throughput import ThroughputMonitor

#: default callbacks, replaceable in a config or on the command line (``trainer.callbacks``).
#: Two write ``last.ckpt`` (so no version counter, no ``last-v1.ckpt``): PeriodicCheckpoint
#: every 100 steps or 10 minutes from the first ones, after each validation and at the end of
#: fit, and a ModelCheckpoint that keeps the best by val/loss (and last.ckpt when it improved).
DEFAULT_CALLBACKS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "monitor": "val/loss",
            "mode": "min",
            "save_last": True,
            "enable_version_counter": False,
        },
    },
    {
        "class_path": "cpc.run.periodic_checkpoint.PeriodicCheckpoint",
        "init_args": {"every_n_train_steps": 100, "every_n_minutes": 10},
    },
    {
        "class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
        "init_args": {"logging_interval": "step"},
    },
]


class Trainer(L.Trainer):
    """Lightning's Trainer, whose ``precision`` also takes ``"auto"``: the precision this
    machine runs fastest (:mod:`cpc.run.precision`), resolved here and printed in one line; its
    default progress bar is :class:`~cpc.run.console.ProgressBar` where Lightning's would be
    Rich's (unless ``callbacks`` has one)."""

    def __init__(
        self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = None, **kwargs: Any
    ) -> None:
        if precision == "auto":
            accelerator = kwargs.get("accelerator", "auto")
            if not isinstance(accelerator, str):  # an Accelerator instance: CUDAAccelerator -> cuda
                accelerator = type(accelerator).__name__.removesuffix("Accelerator").lower()
            precision, reason = auto_precision(accelerator)
            rank_zero_info(f"precision auto -> {precision}: {reason}")
        callbacks = kwargs.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        wants_bar = kwargs.get("enable_progress_bar") is not False
        if wants_bar and _RICH_AVAILABLE and not any(isinstance(c, PB) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, ProgressBar()]
        super().__init__(precision=precision, **kwargs)


class CPCLightningCLI(LightningCLI):
    """LightningCLI with the evaluation callbacks, and defaults for callbacks and logger."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(OnlineKNN, "online_knn")
        parser.add_lightning_class_args(EvaluationReport, "report")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        add_checkpoint_interval(parser)
        parser.link_arguments("report.protocol", "online_knn.protocol", apply_on="instantiate")
        parser.set_defaults(
            {
                "trainer.callbacks": DEFAULT_CALLBACKS,
                "trainer.logger": {"class_path": "cpc.run.loggers.RunLogger"},
                "trainer.log_every_n_steps": 10,  # short runs get curves too (Lightning: 50)
                "trainer.plugins": [{"class_path": "cpc.run.checkpoint_files.AtomicCheckpointIO"}],
                # the model's defaults spelled out, so --print_config shows every option
                "model.encoder": {"class_path": "cpc.models.ResNetEncoder"},
                "model.tasks": [{"class_path": "cpc.tasks.CPCTask"}],
            }
        )
        parser.link_arguments(
            "trainer.default_root_dir",
            "trainer.logger.init_args.save_dir",
            compute_fn=_root_or_cwd,  # a module function: ddp_spawn pickles the parser
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check what would fail later (:func:`cpc.run.preflight.check_fit`), before
        the checkpoint is read or anything is built or written, and a ``--ckpt_path`` against
        the command before LightningCLI replaces the model section by the checkpoint's
        (:func:`check_resume`); a resumed fit then logs on in the checkpoint's run folder
        (:func:`continue_in_run_folder`)."""
        super().parse_arguments(parser, args)
        if subcommand := self.config.get("subcommand"):
            config = self.config[subcommand]
            checkpoint = check_fit(config.trainer, config.get("ckpt_path"))
            if checkpoint is not None:
                check_resume(config, checkpoint, fit=subcommand == "fit")
                if subcommand == "fit":
                    continue_in_run_folder(config, checkpoint)

    def before_instantiate_classes(self) -> None:
        """Drop default callbacks the trainer's switches rule out (no checkpointing: no
        ``ModelCheckpoint``; no logger: no ``LearningRateMonitor``), so those switches work."""
        trainer = self.config[str(self.subcommand)].trainer
        unwanted: tuple[type, ...] = ()
        if trainer.enable_checkpointing is False:
            unwanted += (Checkpoint,)  # ModelCheckpoint, PeriodicCheckpoint
        if trainer.logger is False:
            unwanted += (LearningRateMonitor,)
        trainer.callbacks = [
            c for c in trainer.callbacks or [] if not issubclass(_class(c.class_path), unwanted)
        ]
        set_checkpoint_interval(self.config[str(self.subcommand)])

    def fit(self, model: CPCModule, **kwargs: Any) -> None:
        """``trainer.fit``, after checking the step fits in memory
        (:func:`cpc.run.step_memory.check_step_memory`) and printing the run folder
        (``version_N``), leaving none behind
        when the run fails before it logged or saved anything
        (:func:`cpc.run.run_folder.discard_unstarted`)."""
        check_step_memory(model, self.datamodule, self.trainer.accelerator)
        if self.trainer.log_dir and self.trainer.loggers:
            rank_zero_info(f"run folder: {self.trainer.log_dir}")
        with discard_unstarted(self.trainer):
            self.trainer.fit(model, **kwargs)


def add_checkpoint_interval(parser: LightningArgumentParser) -> None:
    """``--checkpoint.every_n_train_steps`` / ``--checkpoint.every_n_minutes``: the interval of
    the default callbacks' PeriodicCheckpoint without rewriting ``trainer.callbacks``."""
    parser.add_argument(
        "--checkpoint.every_n_train_steps",
        type=int | None,
        default=None,
        help="steps between two saves of last.ckpt (PeriodicCheckpoint in "
        "trainer.callbacks); default: its own (100)",
    )
    parser.add_argument(
        "--checkpoint.every_n_minutes",
        type=float | None,
        default=None,
        help="most minutes of training between two saves of last.ckpt (0: steps only); "
        "default: PeriodicCheckpoint's own (10)",
    )


def set_checkpoint_interval(config: Any) -> None:
    """``--checkpoint.every_n_train_steps`` / ``--checkpoint.every_n_minutes`` into the
    PeriodicCheckpoint of ``trainer.callbacks`` (a one-line error when there is none)."""
    given = {
        key: value
        for key, value in (config.get("checkpoint") or {}).items()
        if key in ("every_n_train_steps", "every_n_minutes") and value is not None
    }
    if not given:
        return
    periodic = [
        c
        for c in config.trainer.callbacks or []
        if issubclass(_class(c.class_path), PeriodicCheckpoint)
    ]
    if not periodic:
        raise ValueError(
            f"--checkpoint.{next(iter(given))} sets PeriodicCheckpoint's interval, but "
            "trainer.callbacks has none: add cpc.run.periodic_checkpoint.PeriodicCheckpoint there"
        )
    if given.get("every_n_minutes") == 0:
        given["every_n_minutes"] = None  # steps only
    for callback in periodic:
        for key, value in given.items():
            callback.init_args[key] = value


def _root_or_cwd(root: str | None) -> str:
    return "." if root is None else root


def _class(class_path: str) -> type:
    """``"lightning.pytorch.callbacks.ModelCheckpoint"`` -> the class."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_resume(config: Any, checkpoint: dict[str, Any], fit: bool) -> None:
    """Refuse in one line a ``checkpoint`` (read from ``config.ckpt_path``) that ``cpc fit`` did
    not write, whose architecture differs from the config's model, or (``fit``) with nothing
    left to train."""
    path = config.ckpt_path
    if "global_step" not in checkpoint:
        raise ValueError(
            f"--ckpt_path {path} is not a checkpoint of cpc fit (no global_step): pass a .ckpt "
            "written by cpc fit (e.g. <run folder>/checkpoints/last.ckpt)"
        )
    model = config.model.as_dict() if hasattr(config.model, "as_dict") else dict(config.model)
    changes = architecture_changes(checkpoint.get("hyper_parameters") or {}, model)
    if changes:
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        raise ValueError(
            f"--ckpt_path {path} has another architecture: {changes[0]}{more}; resume with the "
            "checkpoint's model options, or train a new run without --ckpt_path"
        )
    if not fit:
        return
    trainer = config.trainer
    why = nothing_left(checkpoint, trainer.max_steps, trainer.max_epochs)
    if why:
        raise ValueError(f"nothing left to train from --ckpt_path {path}: {why}")


def continue_in_run_folder(config: Any, checkpoint: dict[str, Any]) -> None:
    """Point the fit's :class:`cpc.run.loggers.RunLogger` (unless given a ``version``) at the run
    folder of ``config.ckpt_path``, so logs continue there from the checkpoint's step; another
    logger, or a checkpoint outside a run folder, is left as it is."""
    trainer = config.trainer
    logger = trainer.logger
    if getattr(logger, "class_path", None) != "cpc.run.loggers.RunLogger":
        return
    args = logger.init_args
    if args.get("version") is not None:
        return
    save_dir = args.get("save_dir") or trainer.default_root_dir or "."
    args.version = run_version(config.ckpt_path, save_dir, args.get("name") or "lightning_logs")
    if args.version is not None:  # its checkpoints/ is not empty: expected here
        args.purge_step = checkpoint["global_step"]  # the first step logged again
        warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
