"""cpc: Contrastive Predictive Coding trainer (work in progress).

Shape letters used across the package:
    B  batch of images          C  image channels        H, W  image height and width
    G  patches along a grid side  P  patch side (pixels)   D  latent feature size
    K  prediction steps ahead     N  candidates in one InfoNCE softmax (1 positive + negatives)
"""

import os

# CPU tensors of 2 MB and more on transparent huge pages, PyTorch's opt-in (pytorch#115990).
# A training step allocates hundreds of MB afresh (the InfoNCE logits alone are ~40 MB), and
# on 4 kB pages the kernel faults in every page: ~20% of a CPU step (benchmarks/throughput.py).
# torch reads the variable once, at its first allocation, so it is set before torch loads;
# THP_MEM_ALLOC_ENABLE=0 in the environment keeps 4 kB pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from cpc.checkpoint import load_encoder as load_encoder  # public API

__version__ = "0.1.0"
