"""`cpc` command: LightningCLI over CPCModule and the image data modules, plus ``cpc eval``.

``cpc fit --config configs/fashion_mnist.yaml`` trains with these defaults (all shown by
``--print_config`` and changeable there or on the command line):

- ``report``: :class:`cpc.eval.EvaluationReport` writes ``report.json`` next to the checkpoints
  at the end of fit (``--report.enabled false`` skips it); its section holds the evaluation
  protocol (:class:`cpc.eval.protocol.EvalProtocol`: ``--report.k``, ``--report.pooling``, ...);
- ``online_knn``: :class:`cpc.eval.OnlineKNN` logs ``val/knn_top1`` after every validation
  (``--online_knn.every_n_epochs 0`` switches it off), with the report's protocol (a link);
- ``throughput``: :class:`cpc.throughput.ThroughputMonitor` logs ``train/images_per_sec`` and
  ``train/mfu`` (``--throughput.window_size``: steps of the rolling mean);
- ``trainer.precision``: Lightning's values, or ``auto``: the fastest precision of this machine
  (:mod:`cpc.precision`), resolved at start and printed in one line;
- ``trainer.callbacks``: ``ModelCheckpoint`` keeping the best by ``val/loss``,
  :class:`cpc.checkpoint_io.PeriodicCheckpoint` writing ``last.ckpt`` every 100 steps or 10
  minutes (``--checkpoint.every_n_train_steps``, ``--checkpoint.every_n_minutes``), after each
  validation, at the end of fit and when SIGTERM or Ctrl-C stops it, and
  ``LearningRateMonitor`` logging the learning rate every step (a default list: a config's
  ``trainer.callbacks`` replaces it; ``--trainer.enable_checkpointing false`` and
  ``--trainer.logger false`` drop the ones they rule out);
- ``trainer.plugins``: :class:`cpc.checkpoint_io.AtomicCheckpointIO` (temp file, fsync, rename:
  a kill or a full disk keeps the previous checkpoint);
- ``trainer.logger``: :class:`cpc.loggers.RunLogger`, TensorBoard event files and a CSV
  ``metrics.csv`` (readable without TensorBoard) in one folder,
  ``<trainer.default_root_dir>/lightning_logs/version_N``, which also holds ``config.yaml``,
  ``hparams.yaml`` and ``checkpoints/``. The logger's ``save_dir`` is linked to
  ``trainer.default_root_dir`` (default: the current folder).

``--ckpt_path .../version_N/checkpoints/last.ckpt`` resumes exactly (data order and random
state included) and logs on in ``version_N``; a checkpoint of another architecture or with
nothing left to train is refused in one line (:func:`check_resume`, :mod:`cpc.resume`).

``cpc eval --ckpt_path PATH`` evaluates a checkpoint's frozen encoder (see :func:`eval_main`)
with the data and report settings of the run's ``config.yaml``, unless given.

``cpc finetune`` trains a classifier with (few) labels from a checkpoint or from scratch
(:mod:`cpc.finetune.cli`).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import cpc.environment  # noqa: F401  (first: the command's settings, before torch loads)

# isort: split
import lightning.pytorch as L
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.pytorch.callbacks import Checkpoint, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from cpc.checkpoint import load_encoder, run_config
from cpc.checkpoint_io import PeriodicCheckpoint
from cpc.console import CLIParser, Parser, QuietStart, quiet_lightning, run_with_one_line_errors
from cpc.data.datamodule import ImageDataModule
from cpc.eval.callbacks import EvaluationReport, OnlineKNN
from cpc.eval.protocol import EvalProtocol, protocol_names
from cpc.eval.report import evaluate
from cpc.eval.report_io import format_report, write_report
from cpc.module import CPCModule
from cpc.precision import auto_precision
from cpc.preflight import check_checkpoint, check_fit
from cpc.resume import architecture_changes, nothing_left, run_version
from cpc.run_folder import discard_unstarted
from cpc.step_memory import check_step_memory
from cpc.throughput import ThroughputMonitor

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
        "class_path": "cpc.checkpoint_io.PeriodicCheckpoint",
        "init_args": {"every_n_train_steps": 100, "every_n_minutes": 10},
    },
    {
        "class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
        "init_args": {"logging_interval": "step"},
    },
]

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


class Trainer(L.Trainer):
    """Lightning's Trainer, whose ``precision`` also takes ``"auto"``: the precision this
    machine runs fastest (:mod:`cpc.precision`), resolved here and printed in one line."""

    def __init__(
        self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = None, **kwargs: Any
    ) -> None:
        if precision == "auto":
            accelerator = kwargs.get("accelerator", "auto")
            if not isinstance(accelerator, str):  # an Accelerator instance: CUDAAccelerator -> cuda
                accelerator = type(accelerator).__name__.removesuffix("Accelerator").lower()
            precision, reason = auto_precision(accelerator)
            rank_zero_info(f"precision auto -> {precision}: {reason}")
        super().__init__(precision=precision, **kwargs)


class CPCLightningCLI(LightningCLI):
    """LightningCLI with the evaluation callbacks, and defaults for callbacks and logger."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(OnlineKNN, "online_knn")
        parser.add_lightning_class_args(EvaluationReport, "report")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
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
        parser.link_arguments("report.protocol", "online_knn.protocol", apply_on="instantiate")
        parser.set_defaults(
            {
                "trainer.callbacks": DEFAULT_CALLBACKS,
                "trainer.logger": {"class_path": "cpc.loggers.RunLogger"},
                "trainer.log_every_n_steps": 10,  # short runs get curves too (Lightning: 50)
                "trainer.plugins": [{"class_path": "cpc.checkpoint_io.AtomicCheckpointIO"}],
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
        """Parse, then check what would fail later (:func:`cpc.preflight.check_fit`), before
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
        (:func:`cpc.step_memory.check_step_memory`) and printing the run folder
        (``version_N``), leaving none behind
        when the run fails before it logged or saved anything
        (:func:`cpc.run_folder.discard_unstarted`)."""
        check_step_memory(model, self.datamodule, self.trainer.accelerator)
        if self.trainer.log_dir and self.trainer.loggers:
            rank_zero_info(f"run folder: {self.trainer.log_dir}")
        with discard_unstarted(self.trainer):
            self.trainer.fit(model, **kwargs)


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
            "trainer.callbacks has none: add cpc.checkpoint_io.PeriodicCheckpoint there"
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
    """Point the fit's :class:`cpc.loggers.RunLogger` (unless given a ``version``) at the run
    folder of ``config.ckpt_path``, so logs continue there from the checkpoint's step; another
    logger, or a checkpoint outside a run folder, is left as it is."""
    trainer = config.trainer
    logger = trainer.logger
    if getattr(logger, "class_path", None) != "cpc.loggers.RunLogger":
        return
    args = logger.init_args
    if args.get("version") is not None:
        return
    save_dir = args.get("save_dir") or trainer.default_root_dir or "."
    args.version = run_version(config.ckpt_path, save_dir, args.get("name") or "lightning_logs")
    if args.version is not None:  # its checkpoints/ is not empty: expected here
        args.purge_step = checkpoint["global_step"]  # the first step logged again
        warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")


def cli_main(args: list[str] | None = None) -> LightningCLI:
    """Entry point of ``cpc fit --config configs/fashion_mnist.yaml``; callable from tests."""
    reject_renamed(sys.argv[1:] if args is None else args)
    quiet_lightning()
    return CPCLightningCLI(
        CPCModule,
        ImageDataModule,
        trainer_class=Trainer,
        subclass_mode_data=True,
        args=args,
        seed_everything_default=0,  # what True gives, without the "No seed found" warning
        trainer_defaults={"callbacks": [QuietStart()]},  # added to trainer.callbacks, not shown
        parser_class=CLIParser,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "description": "CPC pretraining. Evaluate a checkpoint: cpc eval --help; fine-tune "
            "with labels: cpc finetune --help"
        },
    )


#: options set from another by a link: giving them would be silently overridden
LINKED = {
    "trainer.logger.save_dir": "trainer.default_root_dir",
    "trainer.logger.init_args.save_dir": "trainer.default_root_dir",
}


def reject_renamed(args: list[str]) -> None:
    """Raise a one-line ValueError naming the new key when ``args`` or a ``--config`` file
    they name sets an option of :data:`RENAMED`, or one of :data:`LINKED` (the option that
    sets it instead)."""
    given: set[str] = set()
    for i, arg in enumerate(args):
        key, _, value = arg.removeprefix("--").partition("=")
        given.add(key)
        if key in ("-c", "config"):
            path = value or (args[i + 1] if i + 1 < len(args) else "")
            if Path(path).is_file():
                given |= _dotted_keys(read_yaml(Path(path)))
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


def _dotted_keys(config: Any, prefix: str = "") -> set[str]:
    """``{"a": {"b": 1}}`` -> ``{"a", "a.b"}``."""
    if not isinstance(config, dict):
        return set()
    keys = set()
    for key, value in config.items():
        keys |= {prefix + str(key), *_dotted_keys(value, f"{prefix}{key}.")}
    return keys


def eval_parser() -> ArgumentParser:
    """Arguments of ``cpc eval``: a checkpoint, a data module and :func:`evaluate_encoder`'s."""
    parser = Parser(
        prog="cpc eval",
        description="kNN and linear-probe evaluation of a checkpoint's frozen encoder, against "
        "random-init and raw-pixel baselines. Prints a table and writes a JSON report.",
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML of these options")
    parser.add_argument(
        "--ckpt_path",
        type=str,
        required=True,
        help="checkpoint of `cpc fit`, or a run folder: its newest last.ckpt",
    )
    parser.add_subclass_arguments(
        ImageDataModule,
        "data",
        required=False,
        help="data module, as in `cpc fit`; default: the one in the run's config.yaml "
        "(found next to the checkpoint or one or two folders up), whose report section also "
        "gives the defaults of the evaluation protocol (k, temperature, pooling, ...)",
    )
    parser.add_argument(
        "--out",
        type=str | None,
        default=None,
        help="JSON report path; default: next to the checkpoint, <name>.report.json",
    )
    parser.add_class_arguments(EvalProtocol, as_group=False)  # --k, --pooling, ...
    parser.add_function_arguments(
        evaluate, skip={"encoder", "splits", "protocol", "checkpoint_path", "device"}
    )
    parser.add_argument("--device", type=str | None, default=None, help="default: cuda if any")
    return parser


def eval_main(args: list[str] | None = None) -> dict[str, Any]:
    """``cpc eval``: evaluate a checkpoint's encoder, print the table, write the JSON report.

    Example:
        ``cpc eval --ckpt_path runs/lightning_logs/version_0/checkpoints/last.ckpt``

    Returns:
        The report of :func:`cpc.eval.report.evaluate`, with ``meta["report_path"]``.
    """
    parser = eval_parser()
    cfg = parser.parse_args(args)
    ckpt = Path(cfg.ckpt_path)
    if ckpt.is_dir():  # a run folder, as python -m cpc.viz takes: its newest last.ckpt
        from cpc.viz.sample import resolve_checkpoint

        ckpt = resolve_checkpoint(ckpt)
    check_checkpoint(ckpt)
    run = run_config(ckpt)
    report_defaults = {
        key: value
        for key, value in (run.get("report") or {}).items()
        if key in protocol_names() and value is not None
    }
    if report_defaults:  # the run's report settings, unless given on the command line
        parser.set_defaults(report_defaults)
        cfg = parser.parse_args(args)
    if cfg.data is not None:
        datamodule = parser.instantiate_classes(cfg).data
    elif run.get("data"):
        datamodule = ImageDataModule.from_config(run["data"])
    else:
        raise SystemExit(
            f"cpc eval: error: no config.yaml with a data section near {ckpt}: pass --data "
            "(e.g. --data cpc.data.FashionMNISTDataModule)"
        )
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = evaluate(
        load_encoder(ckpt),
        datamodule,
        EvalProtocol.from_mapping(cfg),
        baselines=cfg.baselines,
        device=device,
        progress=cfg.progress,
        checkpoint_path=str(ckpt),
        cache=cfg.cache,
    )
    out = Path(cfg.out) if cfg.out else ckpt.with_suffix(".report.json")
    report["meta"]["report_path"] = str(out)
    write_report(report, out)
    print(format_report(report))  # the command's output
    print(f"report written to {out}")
    return report


def main() -> None:
    """Console script ``cpc``: returns None so the shell sees exit status 0 on success.

    Errors about the user's input or machine (bad values, missing data or GPU, a corrupt
    checkpoint, a full disk, a diverged loss) print one line (:func:`cpc.console.error_line`)
    and exit with status 1; ``CPC_DEBUG=1`` shows the traceback. Errors in the command line
    itself are one line too, with status 2 (:class:`cpc.console.OneLineErrors`).
    """

    def command() -> None:
        if sys.argv[1:2] == ["eval"]:
            eval_main(sys.argv[2:])
        elif sys.argv[1:2] == ["finetune"]:
            from cpc.finetune.cli import finetune_main  # imports cpc.cli: no import at the top

            finetune_main(sys.argv[2:])
        else:
            cli_main()

    run_with_one_line_errors(command, "cpc")


if __name__ == "__main__":
    main()
