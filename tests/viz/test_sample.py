"""cpc.viz.sample: checkpoints, and the random-init baseline."""

import pytest
import torch

from cpc import viz


def test_find_metrics_and_resolve_checkpoint(tmp_path):
    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    best, last = run / "checkpoints" / "epoch=0-step=9.ckpt", run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    best.write_bytes(b"")  # newer, but last.ckpt wins
    assert viz.resolve_checkpoint(tmp_path) == last
    assert viz.resolve_checkpoint(best) == best
    assert viz.find_metrics(last) is None
    (run / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    assert viz.find_metrics(last) == (run / "metrics.csv").resolve()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        viz.resolve_checkpoint(tmp_path / "lightning_logs" / "version_1")


def test_random_init_like_resets_weights_reproducibly():
    from cpc.models.encoder import ResNetEncoder

    encoder = ResNetEncoder(width=8)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)  # move every weight away from any initialisation
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b = viz.random_init_like(encoder, seed=5), viz.random_init_like(encoder, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is untouched
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key])  # the original is unchanged
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])  # same seed, same weights
        assert not torch.equal(a.state_dict()[key], value)  # every tensor was reset
    assert not a.training
