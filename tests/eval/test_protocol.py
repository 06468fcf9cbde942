"""The evaluation protocol is one dataclass; every field reaches the report, the online kNN
and ``cpc eval`` without being named anywhere else."""

import dataclasses

import pytest
import torch
from helpers import write_image_folder

from cpc.cli import eval_parser
from cpc.data import ImageFolderDataModule
from cpc.eval.callbacks import EvaluationReport, OnlineKNN
from cpc.eval.protocol import EvalData, EvalProtocol, protocol_names
from cpc.eval.report import evaluate
from cpc.models import ResNetEncoder
from cpc.run.options import reject_renamed


def test_every_field_is_a_report_keyword_and_a_cpc_eval_flag():
    changed = {
        "k": 3,
        "temperature": 0.5,
        "pooling": "full",
        "knn_standardize": False,
        "knn_pca": 8,
        "knn_exact_max": 1000,
        "memmap": True,
        "compact": False,
        "probe_kwargs": {"epochs": 1},
        "seed": 7,
        "label_budgets": (10, 100),
        "label_draws": 2,
    }
    assert set(changed) == set(protocol_names())  # a new field must be added here
    assert EvaluationReport(**changed).protocol == EvalProtocol(**changed)
    lists = {"probe_kwargs": "{epochs: 1}", "label_budgets": "[10, 100]"}
    flags = [f"--{name}={value}" for name, value in changed.items() if name not in lists]
    flags += [f"--{name}={value}" for name, value in lists.items()]
    cfg = eval_parser().parse_args(["--ckpt_path=x", *flags])
    assert EvalProtocol.from_mapping(cfg) == EvalProtocol(**changed)


def test_bad_label_budgets_are_one_line():
    with pytest.raises(ValueError, match="label_budgets must be labels per class >= 1"):
        EvalProtocol(label_budgets=(0,))


def test_from_mapping_ignores_other_keys_and_keeps_defaults_for_missing_ones():
    section = {"enabled": True, "k": 5, "pooling": None, "filename": "r.json"}
    assert EvalProtocol.from_mapping(section) == EvalProtocol(k=5)


def test_a_new_field_needs_no_other_edit(tmp_path):
    """Adding an option is one field: a subclass with one more field flows through as is, to
    the online kNN and into the report's meta."""

    @dataclasses.dataclass(frozen=True)
    class WithMargin(EvalProtocol):
        margin: float = 0.0  # a hypothetical new option

    protocol = WithMargin(margin=0.5, k=4, compact=False, probe_kwargs={"epochs": 1})
    assert OnlineKNN(protocol=protocol).protocol.margin == 0.5
    torch.manual_seed(0)
    folder = write_image_folder(tmp_path / "images")
    dm = ImageFolderDataModule(str(folder), image_size=28, channels=1)
    report = evaluate(ResNetEncoder(width=8), dm, protocol, baselines=False, progress=False)
    assert report["meta"]["margin"] == 0.5 and report["meta"]["k"] == 4


def test_protocol_is_frozen_and_unknown_fields_are_rejected():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EvalProtocol().k = 5
    with pytest.raises(TypeError, match="standardize"):
        EvaluationReport(standardize=True)


def test_eval_data_is_a_typed_contract():
    class Enough:
        num_classes = 2

        def eval_dataloader(self, split):
            return []

    assert isinstance(Enough(), EvalData) and not isinstance(object(), EvalData)


@pytest.mark.parametrize("old", ["online_knn.k", "online_knn.standardize"])
def test_renamed_options_fail_with_one_line_naming_the_new_one(old, tmp_path):
    with pytest.raises(ValueError, match=r"was renamed: use report\."):
        reject_renamed(["fit", f"--{old}=5"])
    section, key = old.split(".")
    config = tmp_path / "c.yaml"
    config.write_text(f"{section}:\n  {key}: 5\n")
    with pytest.raises(ValueError, match=rf"{old} was renamed"):
        reject_renamed(["fit", "--config", str(config)])
