"""Plain-torch networks: the patch encoders and the row-causal context networks."""

from cpc.models.backbones import TorchvisionEncoder
from cpc.models.context import GRUContext, MaskedConvContext, TransformerContext
from cpc.models.encoder import PatchEncoder, ResNetEncoder

__all__ = [
    "GRUContext",
    "MaskedConvContext",
    "PatchEncoder",
    "ResNetEncoder",
    "TorchvisionEncoder",
    "TransformerContext",
]
