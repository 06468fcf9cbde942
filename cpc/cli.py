"""`cpc` command: ``cpc fit`` (LightningCLI over CPCModule and the image data modules,
:mod:`cpc.run.lightning_cli`), ``cpc eval`` and ``cpc finetune``.

``cpc fit --config configs/fashion_mnist.yaml`` trains with these defaults (all shown by
``--print_config`` and changeable there or on the command line):

- ``report``: :class:`cpc.eval.EvaluationReport` writes ``report.json`` next to the checkpoints
  at the end of fit (``--report.enabled false`` skips it); its section holds the evaluation
  protocol (:class:`cpc.eval.protocol.EvalProtocol`: ``--report.k``, ``--report.pooling``, ...);
- ``online_knn``: :class:`cpc.eval.OnlineKNN` logs ``val/knn_top1`` after every validation
  (``--online_knn.every_n_epochs 0`` switches it off), with the report's protocol (a link);
- ``throughput``: :class:`cpc.run.throughput.ThroughputMonitor` logs ``train/images_per_sec`` and
  ``train/mfu`` (``--throughput.window_size``: steps of the rolling mean);
- ``trainer.precision``: Lightning's values, or ``auto``: the fastest precision of this machine
  (:mod:`cpc.run.precision`), resolved at start and printed in one line;
- ``trainer.callbacks``: ``ModelCheckpoint`` keeping the best by ``val/loss``,
  :class:`cpc.run.periodic_checkpoint.PeriodicCheckpoint` writing ``last.ckpt`` every 100
  steps or 10 minutes (``--checkpoint.every_n_train_steps``,
  ``--checkpoint.every_n_minutes``), after each validation, at the end of fit and when
  SIGTERM or Ctrl-C stops it, and
  ``LearningRateMonitor`` logging the learning rate every step (a default list: a config's
  ``trainer.callbacks`` replaces it; ``--trainer.enable_checkpointing false`` and
  ``--trainer.logger false`` drop the ones they rule out);
- ``trainer.plugins``: :class:`cpc.run.checkpoint_files.AtomicCheckpointIO` (temp file,
  fsync, rename: a kill or a full disk keeps the previous checkpoint);
- ``trainer.logger``: :class:`cpc.run.loggers.RunLogger`, TensorBoard event files and a CSV
  ``metrics.csv`` (readable without TensorBoard) in one folder,
  ``<trainer.default_root_dir>/lightning_logs/version_N``, which also holds ``config.yaml``,
  ``hparams.yaml`` and ``checkpoints/``. The logger's ``save_dir`` is linked to
  ``trainer.default_root_dir`` (default: the current folder).

``--ckpt_path .../version_N/checkpoints/last.ckpt`` resumes exactly (data order and random
state included) and logs on in ``version_N``; a checkpoint of another architecture or with
nothing left to train is refused in one line (:mod:`cpc.run.lightning_cli`,
:mod:`cpc.run.resume_checks`).

``cpc eval --ckpt_path PATH`` evaluates a checkpoint's frozen encoder (see :func:`eval_main`)
with the data and report settings of the run's ``config.yaml``, unless given.

``cpc finetune`` trains a classifier with (few) labels from a checkpoint or from scratch
(:mod:`cpc.finetune.cli`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cpc.run.environment  # noqa: F401  (first: the command's settings, before torch loads)

# isort: split
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI

from cpc.checkpoint import (
    load_encoder,
    resolve_checkpoint,
    run_config,
    run_datamodule,
    run_parser,
)
from cpc.data.datamodule import ImageDataModule
from cpc.eval.protocol import EvalProtocol, protocol_names
from cpc.eval.report import evaluate
from cpc.eval.report_io import format_report, write_report
from cpc.module import CPCModule
from cpc.run.console import CLIParser, QuietStart, quiet_lightning, run_with_one_line_errors
from cpc.run.lightning_cli import CPCLightningCLI, Trainer
from cpc.run.options import reject_renamed
from cpc.run.preflight import check_checkpoint


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


def eval_parser() -> ArgumentParser:
    """Arguments of ``cpc eval``: a checkpoint, a data module and
    :func:`cpc.eval.report.evaluate`'s."""
    parser = run_parser(
        "cpc eval",
        "kNN and linear-probe evaluation of a checkpoint's frozen encoder, against random-init "
        "and raw-pixel baselines. Prints a table and writes a JSON report.",
    )
    parser.add_argument(
        "--ckpt_path",
        type=str,
        required=True,
        help="checkpoint of `cpc fit`, or a run folder: its newest last.ckpt",
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
    data = parser.instantiate_classes(cfg).data if cfg.data is not None else None
    datamodule = run_datamodule(ckpt, data)
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
    checkpoint, a full disk, a diverged loss) print one line (:func:`cpc.run.console.error_line`)
    and exit with status 1; ``CPC_DEBUG=1`` shows the traceback. Errors in the command line
    itself are one line too, with status 2 (:class:`cpc.run.console.OneLineErrors`).
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
