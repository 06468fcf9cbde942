"""The evaluation protocol: how a frozen encoder's features are made and scored, in one place.

``cpc fit`` reads it once, flat under ``report:`` (``--report.k 10``, ``--report.pooling full``),
and hands the same object to the online kNN and to the end-of-fit report; ``cpc eval`` takes
the run's values unless given. Adding an option is one field here: the CLI flag, the link into
the online kNN, the ``cpc eval`` default and the report's ``meta`` follow from the field list.

``EvalData`` is what evaluation needs of a data module (:class:`cpc.data.ImageDataModule`
offers it): labelled loaders of the ``"train"``, ``"val"`` and ``"test"`` splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

from torch.utils.data import DataLoader

from cpc.eval.features import Pooling


@dataclass(frozen=True)
class EvalProtocol:
    """kNN (DINO's ``eval_knn.py``) and linear-probe settings; see :mod:`cpc.eval.report`."""

    k: int = 20  # kNN neighbours; DINO: 20 is consistently better than 10, 100 or 200
    temperature: float = 0.07  # T of the vote weight exp(sim / T); DINO: 0.07 (-> 0: 1-NN)
    pooling: Pooling = "mean"  # latent grid (D, Gh, Gw) -> "mean" D, "grid" 2x2 4D, "full" D*Gh*Gw
    knn_standardize: bool = True  # bank mean/std before the cosine, as the probe; False = DINO
    knn_pca: int = 0  # kNN on the bank's top principal components (0: off); + standardize = whiten
    knn_exact_max: int = 200_000  # larger banks: approximate IVF search (cpc.eval.index)
    memmap: bool = False  # features in memory-mapped temp files (TMPDIR), not RAM: huge banks
    compact: bool = True  # also score encoder(images), the encoder's own pooled feature
    probe_kwargs: dict[str, Any] | None = None  # linear_probe's epochs, weight_decays, lr, ...
    seed: int = 0  # seeds the random-init baseline and the probes
    label_budgets: tuple[int, ...] = ()  # few-label rows: labels per class, e.g. (10, 100); () off
    label_draws: int = 3  # class-balanced subsets drawn per budget (seeds 0, 1, ...): mean ± std

    def __post_init__(self) -> None:
        if any(b < 1 for b in self.label_budgets) or self.label_draws < 1:
            raise ValueError(
                f"label_budgets must be labels per class >= 1 and label_draws >= 1, got "
                f"{list(self.label_budgets)} and {self.label_draws}"
            )
        object.__setattr__(self, "label_budgets", tuple(self.label_budgets))  # a list from YAML

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain, JSON-ready dict (for the report's ``meta`` and configs)."""
        return {**asdict(self), "label_budgets": list(self.label_budgets)}

    @classmethod
    def from_mapping(cls, values: Any) -> EvalProtocol:
        """The protocol of a mapping that may hold other keys too (a config's ``report``
        section); missing or ``None`` fields keep their defaults."""
        given = {f.name: values.get(f.name) for f in fields(cls)}
        return cls(**{name: value for name, value in given.items() if value is not None})


@runtime_checkable
class EvalData(Protocol):
    """A data module evaluation can read: ``num_classes`` and a loader per split, yielding
    ``(images (B, C, H, W), labels (B,))`` in a fixed order without augmentation."""

    num_classes: int

    def eval_dataloader(self, split: str) -> DataLoader: ...


def protocol_names() -> list[str]:
    """The protocol's field names, in order."""
    return [f.name for f in fields(EvalProtocol)]
