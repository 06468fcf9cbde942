"""benchmarks/ablation.py's variants: each builds and takes a finite training step."""

import pytest
import torch
from helpers import load_benchmark

from cpc.models.patches import grid_size

ABLATION = load_benchmark("ablation")


@pytest.mark.parametrize("name", sorted(ABLATION.VARIANTS))
def test_variant_builds_and_trains_one_step(name):
    variant = ABLATION.VARIANTS[name]
    torch.manual_seed(0)
    module = ABLATION.build(variant)
    images = torch.rand(4, 1, 28, 28)
    metrics = module.shared_step(images, "train")
    metrics["train/loss"].backward()
    assert torch.isfinite(metrics["train/loss"])
    encoder = variant.get("encoder", {})
    g = grid_size(28, encoder.get("patch_size", 8), encoder.get("patch_stride", 4))
    width = encoder.get("width", 32) * 2 ** (len(encoder.get("stages", (1, 1))) - 1)
    assert module.encoder.forward_features(images).shape == (4, width, g, g)
    assert ("rotation" in module.tasks) == ("rotation" in variant)
