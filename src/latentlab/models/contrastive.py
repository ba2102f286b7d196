"""Contrastive encoders: a backbone to an L2-normalised embedding, and an optional projection
head above it."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.models.base import CONV_SIZE, ImageModel, family, register
from latentlab.models.blocks import (
    AirbenchEncoder,
    ConvEncoder,
    MLPEncoder,
    ResNetEncoder,
)


class ContrastiveModel(ImageModel):
    """An encoder trained by a contrastive loss.

    `embed()` (and `forward()`, which keeps gradients) returns L2-normalised (B, latent_dim)
    embeddings: the margin loss works on them directly. SupCon and SimCLR put a projection
    head on top (`project()`), as Chen et al. 2020 do, and evaluate the embedding below it,
    which transfers better; the head is never part of `embed()`."""

    kind = "contrastive"
    backbone: nn.Module
    head: nn.Module | None

    def __init__(self, image_shape: tuple[int, int, int], mirror: bool = False,
                 **hparams: Any) -> None:
        super().__init__(image_shape, mirror=mirror, **hparams)
        # test-time flips: embed() averages each image's embedding with its mirror image's
        # (for encoders trained with flips; on CIFAR-10 it added 0.2-2.1 points of kNN)
        self.mirror = mirror

    def build_head(self, latent_dim: int, projection_dim: int) -> None:
        """projection_dim 0: no head (the loss sees the embedding itself)."""
        self.head = None
        if projection_dim:
            self.head = nn.Sequential(nn.Linear(latent_dim, 2 * latent_dim),
                                      nn.BatchNorm1d(2 * latent_dim), nn.ReLU(inplace=True),
                                      nn.Linear(2 * latent_dim, projection_dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) prepared images -> (B, latent_dim) unit-length embeddings."""
        return F.normalize(self.backbone(x), dim=1)

    def project(self, x: Tensor) -> Tensor:
        """(B, C, H, W) prepared images -> (B, projection_dim) unit-length projections
        (the embeddings themselves when the model has no head)."""
        features = self.backbone(x)
        if self.head is None:
            return F.normalize(features, dim=1)
        return F.normalize(self.head(features), dim=1)

    @torch.no_grad()
    def embed(self, images: Any) -> Tensor:
        """Images -> (N, latent_dim) L2-normalised embeddings."""
        x = self.prepare(images, self.input_size())
        z = self(x)
        return F.normalize(z + self(x.flip(-1)), dim=1) if self.mirror else z


@register("mlp")
class MLPContrastive(ContrastiveModel):
    """The course assignment's network: pixels -> 256 -> dropout -> 128 -> dropout -> latent_dim."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, dropout: float = 0.1, mirror: bool = False) -> None:
        super().__init__(image_shape, mirror, latent_dim=latent_dim,
                         projection_dim=projection_dim, dropout=dropout)
        self.backbone = MLPEncoder(int(np.prod(self.image_shape)), latent_dim, dropout)
        self.build_head(latent_dim, projection_dim)


@register("conv")
class ConvContrastive(ContrastiveModel):
    """The autoencoder's convolutional encoder at 32x32."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, width: int = 32, mirror: bool = False) -> None:
        super().__init__(image_shape, mirror, latent_dim=latent_dim,
                         projection_dim=projection_dim, width=width)
        self.backbone = ConvEncoder(self.image_shape[0], latent_dim, width)
        self.build_head(latent_dim, projection_dim)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


@register("resnet")
class ResNetContrastive(ContrastiveModel):
    """ResNetEncoder features -> linear -> latent_dim: the margin loss's and SimCLR's
    default for colour images."""

    encoder: type[ResNetEncoder | AirbenchEncoder] = ResNetEncoder

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, width: int = 16, mirror: bool = False) -> None:
        super().__init__(image_shape, mirror, latent_dim=latent_dim,
                         projection_dim=projection_dim, width=width)
        features = self.encoder(self.image_shape[0], width)
        self.backbone = nn.Sequential(features, nn.Linear(features.out_features, latent_dim))
        self.build_head(latent_dim, projection_dim)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


@register("airbench")
class AirbenchContrastive(ResNetContrastive):
    """AirbenchEncoder features -> linear -> latent_dim: airbench's network for embeddings,
    SupCon's default for colour images."""

    encoder = AirbenchEncoder

    # width 32, not airbench's 64: the width that won on validation on 2 CPU cores
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, width: int = 32, mirror: bool = False) -> None:
        super().__init__(image_shape, latent_dim, projection_dim, width, mirror)

    def fit_to_data(self, images: Tensor) -> None:
        """Before training: the whitening layer from (a few thousand) training images."""
        encoder = cast(AirbenchEncoder, cast(nn.Sequential, self.backbone)[0])
        encoder.fit_whitening(self.prepare(images, self.input_size(), checked=False))


CONTRASTIVE_MODELS = family(ContrastiveModel)
