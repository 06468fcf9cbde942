import logging

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

import cpc.run.precision
from cpc.run.console import ProgressBar
from cpc.run.lightning_cli import Trainer
from cpc.run.precision import cpu_flags, resolve_precision


@pytest.mark.parametrize(
    ("accelerator", "flags", "capability", "expected"),
    [
        ("auto", {"avx2", "avx512f", "avx512_bf16"}, None, "bf16-mixed"),  # AVX-512-bf16 EPYC
        ("auto", {"avx2", "amx_bf16", "amx_tile"}, None, "bf16-mixed"),  # AMX Xeon
        ("auto", {"avx2", "avx512f"}, None, "32"),  # AVX-512 without bf16
        ("cpu", {"avx2"}, None, "32"),  # AVX2 EPYC: bf16 emulated, 18x slower
        ("auto", {"avx2"}, (9, 0), "bf16-mixed"),  # H100 / H200
        ("gpu", {"avx2"}, (8, 0), "bf16-mixed"),  # A100
        ("cuda", {"avx2"}, (7, 5), "16-mixed"),  # T4: no bf16
        ("cpu", {"avx2"}, (9, 0), "32"),  # a CPU run on a machine that has a GPU
        ("cpu", {"avx512_bf16"}, (7, 0), "bf16-mixed"),
        ("gpu", {"avx512_bf16"}, None, "32"),  # asked for a GPU that is not there
        ("mps", {"avx512_bf16"}, None, "32"),  # no rule: Lightning's default
    ],
)
def test_rule_follows_cpu_flags_and_cuda_capability(accelerator, flags, capability, expected):
    precision, reason = resolve_precision(accelerator, flags, capability)
    assert precision == expected and reason


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbugs\t\t: none\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("flags", "expected"), [({"avx2"}, "32-true"), ({"amx_bf16"}, "bf16-mixed")]
)
def test_trainer_resolves_auto_and_says_so(monkeypatch, caplog, flags, expected):
    monkeypatch.setattr(cpc.run.precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(cpc.run.precision, "cuda_capability", lambda: None)
    with caplog.at_level(logging.INFO):
        trainer = Trainer(
            precision="auto", accelerator="cpu", logger=False, enable_progress_bar=False
        )
    assert trainer.precision == expected
    lines = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert len(lines) == 1 and expected.removesuffix("-true") in lines[0]
    assert (
        Trainer(precision="bf16-mixed", accelerator="cpu", logger=False).precision == "bf16-mixed"
    )


@pytest.mark.parametrize(
    ("limits", "description"), [({"max_steps": 5}, "Epoch 3"), ({"max_epochs": 4}, "Epoch 3/3")]
)
def test_the_progress_bar_names_the_epoch_without_a_negative_total(limits, description):
    """A run bounded by steps has Lightning's max_epochs -1: its bar reads "Epoch 3", not
    Rich's "Epoch 3/-2"; a run bounded by epochs keeps "Epoch 3/3"."""
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **limits)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, ProgressBar)
    bar.setup(trainer, None, "fit")  # as fit does: the bar learns its trainer
    assert bar._get_train_description(3).strip() == description


def test_the_progress_bar_can_be_switched_off_or_replaced():
    off = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, max_steps=1)
    assert off.progress_bar_callback is None
    own = TQDMProgressBar()
    mine = Trainer(accelerator="cpu", logger=False, callbacks=[own], max_steps=1)
    assert mine.progress_bar_callback is own
