"""Plain-torch networks: the patch encoders and the row-causal context networks."""

from cpc.models.backbones import TorchvisionEncoder
from cpc.models.context import GRUContext, MaskedConvContext, TransformerContext
from cpc.models.encoder import PatchEncoder, ResNetEncoder
from cpc.models.small_cnn import SmallCNN

__all__ = [
    "SmallCNN",
    "GRUContext",
    "MaskedConvContext",
    "PatchEncoder",
    "ResNetEncoder",
    "TorchvisionEncoder",
    "TransformerContext",
]
