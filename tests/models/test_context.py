import pytest
import torch

from cpc.models.context import GRUContext, MaskedConvContext, TransformerContext

CONTEXTS = [MaskedConvContext, GRUContext, TransformerContext]


@pytest.mark.parametrize("context_cls", CONTEXTS)
def test_shapes_are_kept(context_cls):
    net = context_cls(16)
    assert net(torch.randn(2, 16, 6, 5)).shape == (2, 16, 6, 5)


@pytest.mark.parametrize("context_cls", CONTEXTS)
@pytest.mark.parametrize("row", [0, 2, 4])
def test_context_is_causal_over_rows(context_cls, row):
    torch.manual_seed(0)
    net = context_cls(16).train()
    latents = torch.randn(2, 16, 6, 6)
    perturbed = latents.clone()
    perturbed[:, :, row + 1 :] += torch.randn_like(perturbed[:, :, row + 1 :])
    before, after = net(latents), net(perturbed)
    torch.testing.assert_close(before[:, :, : row + 1], after[:, :, : row + 1])
    assert not torch.allclose(before[:, :, row + 1 :], after[:, :, row + 1 :])


def test_odd_kernel_sizes_keep_the_shape_even_ones_are_one_clear_error():
    assert MaskedConvContext(8, kernel_size=5)(torch.randn(2, 8, 6, 5)).shape == (2, 8, 6, 5)
    with pytest.raises(ValueError, match=r"kernel_size must be odd .* got 4: use 3 or 5"):
        MaskedConvContext(8, kernel_size=4)
