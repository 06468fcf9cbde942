"""Plain-torch networks: the patch encoder and the row-causal context networks."""

from cpc.models.context import GRUContext, MaskedConvContext, TransformerContext
from cpc.models.encoder import ResNetEncoder

__all__ = ["GRUContext", "MaskedConvContext", "ResNetEncoder", "TransformerContext"]
