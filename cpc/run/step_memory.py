"""Memory of a training step, known before the first one: estimated from the config and
compared with the device's free memory, so a batch that cannot fit is refused in one line
naming a ``--data.batch_size`` (or ``--data.image_size``) that does, not killed by the kernel
minutes later.

The step's peak is dominated by the CPC task's InfoNCE logits: for every direction and step
``k``, a ``(Q, Q)`` float32 matrix with ``Q = B * (G - k) * G`` (every valid prediction against
every target of the batch), kept for backward with its softmax; the encoder's activations,
``B * G * G`` patches, come second. :func:`step_bytes` is that sum with constants fitted to
peak RSS measured on the CPU (data/README.md: within a factor 1.25 above the measurement).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: bytes per logit entry, its softmax and gradient included (float32: 4 bytes x 2.5)
LOGIT_BYTES = 10
#: bytes per activation value of the encoder's first stage (float32 x the tensors autograd keeps)
ACTIVATION_BYTES = 16


@dataclass(frozen=True)
class StepShape:
    """What the step's memory depends on: batch ``B``, image side ``S`` (square), the
    encoder's patch grid and first-stage activations, and the CPC offsets."""

    batch: int
    image_size: int
    patch_size: int
    patch_stride: int
    width: int  # channels of the encoder's first stage
    stem_stride: int
    offsets: tuple[int, ...]  # every (direction, k) of every CPC task: its k

    @property
    def grid(self) -> int:
        """``G``: patches along a side."""
        return max(0, (self.image_size - self.patch_size) // self.patch_stride + 1)

    def with_(self, **changes: int) -> StepShape:
        return StepShape(**{**self.__dict__, **changes})


def step_bytes(shape: StepShape) -> int:
    """Estimated peak bytes of one training step above the process's resting memory."""
    g, b = shape.grid, shape.batch
    logits = sum((b * max(0, g - k) * g) ** 2 for k in shape.offsets)
    side = -(-shape.patch_size // shape.stem_stride)  # the stem's output side
    activations = b * g * g * shape.width * side * side
    return LOGIT_BYTES * logits + ACTIVATION_BYTES * activations


def available_bytes(accelerator: str) -> tuple[int, str] | None:
    """``(free bytes, "the GPU" / "this machine")`` of the device a fit runs on, or None when
    unknown (another accelerator, no ``/proc``)."""
    import torch

    name = str(accelerator).lower()
    if name in ("cuda", "gpu") or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info()
        return free, "the GPU"
    if name in ("cpu", "auto"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_fits(shape: StepShape, free: int, where: str) -> None:
    """Raise a one-line ValueError when ``step_bytes(shape)`` exceeds 90% of ``free``, naming
    the largest ``--data.batch_size`` (and a ``--data.image_size``) that fits."""
    budget = 0.9 * free
    need = step_bytes(shape)
    if need <= budget:
        return
    batch = max(
        (b for b in range(1, shape.batch) if step_bytes(shape.with_(batch=b)) <= budget), default=0
    )
    if batch >= 8:
        batch -= batch % 8
    sizes = range(shape.image_size - 1, shape.patch_size - 1, -1)
    size = next((s for s in sizes if step_bytes(shape.with_(image_size=s)) <= budget), 0)
    fixes = [f"--data.batch_size {batch}"] if batch else []
    fixes += [f"--data.image_size {size}"] if size else []
    fix = " (or ".join(fixes) + (")" if len(fixes) == 2 else "") if fixes else "a smaller model"
    g = shape.grid
    raise ValueError(
        f"a training step needs about {need / 2**30:.1f} GB ({shape.batch} images of "
        f"{shape.image_size} px, {g}x{g} patches each, mostly InfoNCE logits) but {where} has "
        f"{free / 2**30:.1f} GB free: use {fix}"
    )


def step_shape(model: Any, datamodule: Any) -> StepShape | None:
    """The :class:`StepShape` of a ``CPCModule`` and image data module, or None when it is
    not known before setup (no square image size, an encoder without patches, no CPC task)."""
    encoder = model.encoder
    try:
        height, width = datamodule.image_size
        batch = int(datamodule.batch_size)
        patch_size, patch_stride = int(encoder.patch_size), int(encoder.patch_stride)
        stem = encoder.stem[0]
    except (AttributeError, NotImplementedError, TypeError, ValueError, IndexError):
        return None
    offsets = tuple(
        k
        for task in model.tasks.values()
        if getattr(task, "weight", 1) != 0
        for _ in getattr(task, "directions", ())
        for k in getattr(task, "steps", ())
    )
    if not offsets:
        return None
    return StepShape(
        batch=batch,
        image_size=max(height, width),
        patch_size=patch_size,
        patch_stride=patch_stride,
        width=int(stem.out_channels),
        stem_stride=int(stem.stride[0]),
        offsets=offsets,
    )


def check_step_memory(model: Any, datamodule: Any, accelerator: Any) -> None:
    """:func:`check_fits` for a fit of ``model`` on ``datamodule`` on ``accelerator`` (a
    Lightning Accelerator or its name); nothing when the step's shape or the free memory is
    unknown."""
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__
    name = name.removesuffix("Accelerator").lower()
    shape, free = step_shape(model, datamodule), available_bytes(name)
    if shape is not None and free is not None:
        check_fits(shape, *free)
