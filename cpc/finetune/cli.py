"""``cpc finetune``: train a classifier with (few) labels, from a pretraining run or from scratch.

    cpc finetune --config configs/fashion_mnist_finetune.yaml --ckpt_path PRETRAINED.ckpt \\
        --data.labels_per_class 100
    cpc finetune --config configs/fashion_mnist_finetune.yaml --data.labels_per_class 100
    cpc finetune --config ... --ckpt_path <run folder>/checkpoints/last.ckpt   # resume

``--ckpt_path`` is read for what it is: a ``cpc fit`` checkpoint is the encoder to start from
(``model.pretrained``); a ``cpc finetune`` checkpoint resumes that fine-tune exactly. Without
it, the same architecture trains from scratch. The epoch is chosen on the validation split
(the best ``val/acc`` checkpoint); the test split is scored once, at the end, with that
checkpoint, into ``report.json`` next to the checkpoints. The run folder also holds
``labelled_subset.json`` (which images were labelled) and ``config.yaml``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from cpc.data.datamodule import ImageDataModule
from cpc.finetune.module import FineTuneModule
from cpc.run.console import CLIParser, QuietStart, quiet_lightning
from cpc.run.lightning_cli import (
    DEFAULT_CALLBACKS,
    CPCLightningCLI,
    Trainer,
    _root_or_cwd,
    add_checkpoint_interval,
    check_resume,
    continue_in_run_folder,
)
from cpc.run.preflight import check_fit
from cpc.run.run_folder import discard_unstarted

#: the fit's callbacks, keeping the best checkpoint by validation accuracy
CALLBACKS = [
    {
        **DEFAULT_CALLBACKS[0],
        "init_args": {**DEFAULT_CALLBACKS[0]["init_args"], "monitor": "val/acc", "mode": "max"},
    },
    *DEFAULT_CALLBACKS[1:],
]


class FineTuneCLI(LightningCLI):
    """LightningCLI of :class:`FineTuneModule` with ``cpc fit``'s run folder, checkpoints,
    logger and one-line checks, and a test of the best checkpoint after the fit."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        add_checkpoint_interval(parser)
        parser.set_defaults(
            {
                "trainer.callbacks": CALLBACKS,
                "trainer.logger": {"class_path": "cpc.run.loggers.RunLogger"},
                "trainer.log_every_n_steps": 10,
                "trainer.plugins": [{"class_path": "cpc.run.checkpoint_files.AtomicCheckpointIO"}],
                "model.encoder": {"class_path": "cpc.models.ResNetEncoder"},
            }
        )
        parser.link_arguments(
            "trainer.default_root_dir", "trainer.logger.init_args.save_dir", compute_fn=_root_or_cwd
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """A pretraining checkpoint becomes ``model.pretrained``; a fine-tune's resumes."""
        super().parse_arguments(parser, args)
        config = self.config["fit"]
        checkpoint = check_fit(config.trainer, config.get("ckpt_path"))
        if checkpoint is None:
            return
        if "tasks" in (checkpoint.get("hyper_parameters") or {}):  # a cpc fit checkpoint
            config.model.pretrained, config.ckpt_path = config.ckpt_path, None
            return
        check_resume(config, checkpoint, fit=True)
        continue_in_run_folder(config, checkpoint)

    #: drop default callbacks that --trainer.enable_checkpointing/logger false rule out
    before_instantiate_classes = CPCLightningCLI.before_instantiate_classes

    def fit(self, model: FineTuneModule, **kwargs: Any) -> None:
        with discard_unstarted(self.trainer):
            self.trainer.fit(model, **kwargs)

    def after_fit(self) -> None:
        """Score the test split once, with the checkpoint chosen on validation."""
        write_test_report(self.trainer, self.model, self.datamodule)


def write_test_report(trainer: Trainer, model: FineTuneModule, datamodule: Any) -> dict:
    """Test the best ``val/acc`` checkpoint (the final weights without one) and write
    ``report.json`` next to the checkpoints; returns the report."""
    best = trainer.checkpoint_callback
    ckpt = getattr(best, "best_model_path", "") or None
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    hp = model.hparams
    report = {
        "test": {"top1": metrics["test/top1"], "top5": metrics["test/top5"]},
        "val_top1": float(best.best_model_score) if ckpt else None,
        "checkpoint": ckpt,
        "mode": hp.mode,
        "pretrained": hp.pretrained,
        "labels": {
            "per_class": datamodule.labels_per_class,
            "fraction": datamodule.label_fraction,
            "seed": datamodule.label_seed,
            "count": len(datamodule.labelled_indices()),
        },
        "data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
    }
    folder = Path(best.dirpath) if best and best.dirpath else Path(trainer.log_dir or ".")
    path = folder / "report.json"
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    start = "from " + hp.pretrained if hp.pretrained else "from scratch"
    val = f"val top-1 {100 * report['val_top1']:.2f}, " if report["val_top1"] is not None else ""
    rank_zero_info(
        f"fine-tuned ({hp.mode}, {start}, {report['labels']['count']} labels): {val}"
        f"test top-1 {100 * report['test']['top1']:.2f}; report written to {path}"
    )
    return report


def finetune_main(args: list[str] | None = None) -> FineTuneCLI:
    """Entry point of ``cpc finetune``; callable from tests and benchmarks."""
    quiet_lightning()
    # a few labels make epochs of one step: logging is per step all the same
    warnings.filterwarnings("ignore", "The number of training batches .* logging interval")
    return FineTuneCLI(
        FineTuneModule,
        ImageDataModule,
        trainer_class=Trainer,
        subclass_mode_data=True,
        args=["fit", *(args or [])],
        seed_everything_default=0,
        trainer_defaults={"callbacks": [QuietStart()]},
        parser_class=CLIParser,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "description": "Fine-tune a pretrained encoder with (few) labels, or train the same "
            "architecture from scratch: cpc finetune --config configs/fashion_mnist_finetune.yaml"
            " [--ckpt_path PRETRAINED.ckpt] [--data.labels_per_class N]"
        },
    )
