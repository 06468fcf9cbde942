import torch

from cpc.models import SmallCNN


def test_small_cnn_keeps_the_contract_finetune_reads():
    cnn = SmallCNN(in_channels=3, width=8, pool_size=2)
    grid = cnn.forward_features(torch.rand(5, 3, 28, 28))
    assert grid.shape == (5, cnn.num_features, 7, 7) and cnn.num_features == 16
    assert (cnn.in_channels, cnn.pool_size) == (3, 2)
    grid.sum().backward()
    assert all(p.grad is not None for p in cnn.parameters())
