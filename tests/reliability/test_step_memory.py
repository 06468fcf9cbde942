"""A step's memory known before the first step: the estimate against measured peaks, and a
batch that cannot fit refused in one line naming a batch size that does."""

import re
import sys

import pytest
from helpers import fit_args

from cpc import cli
from cpc.run.step_memory import StepShape, available_bytes, check_fits, step_bytes

GB = 2**30

#: peak RSS (kB, /usr/bin/time -v) of 3 steps of cpc fit on 300 RGB images, image-folder data
#: with the default encoder and CPC task, by (image_size, batch_size); data/README.md
MEASURED_KB = {
    (32, 8): 1002676,  # the process at rest: torch, Lightning, the data (no step to speak of)
    (32, 128): 1334288,
    (32, 256): 2275128,
    (64, 32): 1643232,
    (64, 64): 3531800,
    (96, 16): 2070304,
    (96, 32): 4813988,
}


def default_shape(image_size: int, batch: int) -> StepShape:
    """The image-folder defaults: 8-px patches every 4 px, width 32, stem stride 2, k = 2, 3."""
    return StepShape(batch, image_size, 8, 4, 32, 2, (2, 3))


@pytest.mark.parametrize(("size", "batch"), [key for key in MEASURED_KB if key != (32, 8)])
def test_estimate_is_at_most_25_percent_above_the_measured_step(size, batch):
    rest = MEASURED_KB[(32, 8)] * 1024
    measured = MEASURED_KB[(size, batch)] * 1024 - rest
    assert 1.0 <= step_bytes(default_shape(size, batch)) / measured <= 1.25


def test_a_step_that_does_not_fit_names_a_batch_size_that_does():
    shape = default_shape(64, 256)  # the defaults: 15x15 patches, ~43 GB of logits and more
    with pytest.raises(ValueError) as info:
        check_fits(shape, 8 * GB, "this machine")
    line = str(info.value)
    assert line.startswith("a training step needs about 43.4 GB (256 images of 64 px, 15x15")
    batch, size = map(
        int, re.search(r"batch_size (\d+) \(or --data.image_size (\d+)\)$", line).groups()
    )
    assert step_bytes(shape.with_(batch=batch)) <= 0.9 * 8 * GB
    assert step_bytes(shape.with_(batch=batch + 8)) > 0.9 * 8 * GB  # the largest multiple of 8
    assert step_bytes(shape.with_(image_size=size)) <= 0.9 * 8 * GB
    check_fits(shape.with_(batch=batch), 8 * GB, "this machine")  # fits: no error


def test_on_a_gpu_the_free_memory_is_the_gpus(monkeypatch):
    """With CUDA the budget is the GPU's free memory (``torch.cuda.mem_get_info``), for
    ``cuda`` and for ``auto``; ``cuda`` without a GPU is unknown (no check), not the RAM."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2 * GB, 80 * GB))
    assert available_bytes("cuda") == (2 * GB, "the GPU")
    assert available_bytes("auto") == (2 * GB, "the GPU")
    with pytest.raises(ValueError, match=r"but the GPU has 2\.0 GB free: use --data.batch_size"):
        check_fits(default_shape(64, 64), *available_bytes("gpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_bytes("cuda") is None
    assert available_bytes("auto")[1] == "this machine"


def test_cpc_fit_refuses_a_batch_too_big_for_free_memory_before_the_first_step(
    tiny_folder, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        "cpc.run.step_memory.available_bytes",
        lambda accelerator: (2**20, "this machine"),  # 1 MB: the step needs ~1.2
    )
    monkeypatch.setattr(sys, "argv", ["cpc", *fit_args(tiny_folder, tmp_path / "run")])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main()
    line = str(info.value.code)
    assert re.match(
        r"cpc: error: a training step needs about 0\.0 GB \(8 images of 28 px, 6x6 patches each, "
        r"mostly InfoNCE logits\) but this machine has 0\.0 GB free: use --data.batch_size \d ",
        line,
    ), line
    assert not (tmp_path / "run").exists()


def test_the_image_folder_and_streaming_defaults_fit_in_a_few_gb(tiny_folder):
    """A user's folder with every default (64 px, the default RGB encoder and CPC task) needs
    a step of under 4 GB, not the 43 GB of a batch of 256; streaming has the same batch."""
    import inspect

    from cpc.data import ImageFolderDataModule, StreamingDataModule
    from cpc.models.encoder import ResNetEncoder
    from cpc.module import CPCModule
    from cpc.run.step_memory import step_shape

    data = ImageFolderDataModule(str(tiny_folder))
    shape = step_shape(CPCModule(encoder=ResNetEncoder(in_channels=3)), data)
    assert (shape.image_size, shape.batch, shape.grid) == (64, 64, 15)
    assert step_bytes(shape) < 4 * GB < step_bytes(shape.with_(batch=256))
    streaming = inspect.signature(StreamingDataModule).parameters
    assert streaming["batch_size"].default == 64 and streaming["image_size"].default == 64
