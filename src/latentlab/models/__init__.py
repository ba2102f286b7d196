"""Networks, one module per family; every name is importable from here.

base.py holds ImageModel and the one registry (MODELS: class name -> class, how checkpoints
name a model); each family's command-line choices are read from it with family()."""

from latentlab.models.autoencoders import (
    AUTOENCODERS,
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
)
from latentlab.models.base import (
    CONV_SIZE,
    MODELS,
    ImageModel,
    family,
    register,
    resolve_encoder,
    resolve_family,
)
from latentlab.models.blocks import (
    AirbenchEncoder,
    BasicResidualBlock,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    ResidualBlock,
    ResNetEncoder,
    SelfAttention2d,
    conv_block,
    up_block,
)
from latentlab.models.contrastive import (
    CONTRASTIVE_MODELS,
    AirbenchContrastive,
    ContrastiveModel,
    ConvContrastive,
    MLPContrastive,
    ResNetContrastive,
)
from latentlab.models.separators import (
    SEPARATORS,
    ResUNetSeparator,
    Separator,
    TwoDecoderAESeparator,
    TwoDecoderSeparator,
    TwoDecoderVAESeparator,
    UNetSeparator,
    pad_to_multiple,
    small_init,
)
from latentlab.models.vae import (
    CONTEXT_REACH,
    MLPVAE,
    VAES,
    CausalConv2d,
    ConvVAE,
    RawConvDecoder,
    RawMLPDecoder,
    VariationalAutoencoder,
    causal_context,
    likelihood_channels,
)

__all__ = [
    "AUTOENCODERS", "AirbenchContrastive", "AirbenchEncoder", "CONTEXT_REACH",
    "CONTRASTIVE_MODELS", "CONV_SIZE", "MODELS", "MLPVAE",
    "SEPARATORS", "VAES", "Autoencoder", "BasicResidualBlock", "CausalConv2d",
    "ContrastiveModel", "ConvAutoencoder", "ConvContrastive", "ConvDecoder", "ConvEncoder",
    "ConvVAE", "ImageModel", "MLPAutoencoder", "MLPContrastive", "MLPDecoder", "MLPEncoder",
    "RawConvDecoder", "RawMLPDecoder", "ResNetContrastive", "ResNetEncoder", "ResUNetSeparator",
    "ResidualBlock", "SelfAttention2d", "Separator", "TwoDecoderAESeparator",
    "TwoDecoderSeparator", "TwoDecoderVAESeparator", "UNetSeparator", "VariationalAutoencoder",
    "causal_context", "conv_block", "family", "likelihood_channels", "pad_to_multiple",
    "register", "resolve_encoder", "resolve_family", "small_init", "up_block",
]
