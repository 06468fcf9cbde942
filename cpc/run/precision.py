"""Training precision chosen by the hardware: what ``--trainer.precision auto`` resolves to.

The rule, from measurements of the default model's training step
(``docs/results.md#training-speed``):

- a CUDA GPU with bf16 (compute capability >= 8.0: Ampere, Hopper, ...): ``"bf16-mixed"``;
- an older CUDA GPU: ``"16-mixed"`` (fp16 autocast with loss scaling);
- a CPU with bf16 instructions (``amx_bf16`` or ``avx512_bf16``): ``"bf16-mixed"``, faster
  than fp32 there;
- anything else, ``"32"``: without those instructions bf16 is emulated, many times slower than
  fp32.

The inputs (CPU flags, CUDA capability) are arguments of :func:`resolve_precision`, so the rule
is tested on any machine; :func:`auto_precision` reads them from this one.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: CPU flags (as in /proc/cpuinfo) of native bf16 matrix instructions
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (``{"avx2", "avx512_bf16", ...}``); empty where not readable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:  # not Linux
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of the current CUDA device, None without CUDA."""
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def resolve_precision(
    accelerator: str, flags: set[str], capability: tuple[int, int] | None
) -> tuple[str, str]:
    """The precision for ``accelerator`` (``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda"``, ...)
    given the CPU ``flags`` and the CUDA ``capability`` (None: no CUDA device).

    Returns:
        ``(precision, reason)``: a Lightning precision and a few words saying why.
    """
    on_cuda = accelerator in ("cuda", "gpu") or (accelerator == "auto" and capability is not None)
    if on_cuda:
        if capability is None:
            return "32", "no CUDA device found"
        if capability >= (8, 0):
            return (
                "bf16-mixed",
                f"CUDA GPU with bf16 (compute capability {capability[0]}.{capability[1]})",
            )
        return (
            "16-mixed",
            f"CUDA GPU without bf16 (compute capability {capability[0]}.{capability[1]})",
        )
    if accelerator not in ("cpu", "auto"):
        return "32", f"no bf16 rule for accelerator {accelerator!r}"
    native = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    if native:
        return "bf16-mixed", f"CPU with {' and '.join(native)}"
    return "32", "CPU without amx_bf16 or avx512_bf16 (bf16 would be emulated, much slower)"


def auto_precision(accelerator: str = "auto") -> tuple[str, str]:
    """:func:`resolve_precision` for this machine."""
    return resolve_precision(accelerator, cpu_flags(), cuda_capability())
