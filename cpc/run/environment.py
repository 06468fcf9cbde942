"""The process environment of the ``cpc`` command, set when this module is imported: first
thing in :mod:`cpc.cli` (what the console script loads), before any torch import.

A module of its own, free of torch, because torch reads ``THP_MEM_ALLOC_ENABLE`` once, at its
first allocation. ``import cpc`` does not import it and changes nothing; a script or notebook
that wants the same calls :func:`set_process_defaults` (or sets the variable) before its own
``import torch``.
"""

import os


def set_process_defaults() -> None:
    """CPU tensors of 2 MB and more on transparent huge pages, PyTorch's opt-in
    (pytorch#115990), unless the environment says otherwise (``THP_MEM_ALLOC_ENABLE=0`` keeps
    4 kB pages). A training step allocates hundreds of MB afresh, and on 4 kB pages the kernel
    faults in every page (``benchmarks/throughput.py`` measures the difference)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


set_process_defaults()
