"""Fine-tuning with (few) labels: ``cpc finetune`` (cli.py) trains :class:`FineTuneModule`
(module.py), a head on a pretrained or freshly initialised patch encoder, on a class-balanced
labelled subset of a data module (``--data.labels_per_class``), chooses the epoch on
validation and scores the test split once."""

from cpc.finetune.module import FineTuneModule, load_pretrained_encoder

__all__ = ["FineTuneModule", "load_pretrained_encoder"]
