"""cpc: Contrastive Predictive Coding trainer (work in progress).

Shape letters used across the package:
    B  batch of images          C  image channels        H, W  image height and width
    G  patches along a grid side  P  patch side (pixels)   D  latent feature size
    K  prediction steps ahead     N  candidates in one InfoNCE softmax (1 positive + negatives)
"""

from cpc.checkpoint import load_encoder as load_encoder  # public API

__version__ = "0.1.0"
