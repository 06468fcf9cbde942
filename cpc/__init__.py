"""cpc: Contrastive Predictive Coding trainer (work in progress).

Shape letters used across the package:
    B  batch of images          C  image channels        H, W  image height and width
    G  patches along a grid side  P  patch side (pixels)   D  latent feature size
    K  prediction steps ahead     N  candidates in one InfoNCE softmax (1 positive + negatives)

Importing cpc changes nothing in the process (no environment variable, no torch import until
:func:`load_encoder` or a submodule needs it). The ``cpc`` command sets
``THP_MEM_ALLOC_ENABLE=1`` before torch loads (:mod:`cpc.run.environment`): CPU tensors of 2 MB
and more on transparent huge pages, a faster CPU step. A script or notebook gets the same by
setting it before its first ``import torch``::

    import os
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # torch reads it at its first allocation
    import torch
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["load_encoder"]


def __getattr__(name: str) -> Any:
    """``cpc.load_encoder`` (public API), imported on first use: ``import cpc`` loads no torch."""
    if name == "load_encoder":
        from cpc.checkpoint import load_encoder

        return load_encoder
    raise AttributeError(f"module 'cpc' has no attribute {name!r}")
