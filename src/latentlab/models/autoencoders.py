"""Autoencoders: encoder -> latent -> decoder, trained to reconstruct."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.models.base import CONV_SIZE, ImageModel, family, register
from latentlab.models.blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


class Autoencoder(ImageModel):
    """Shared interface: embed() the latent, decode() it, reconstruct() images."""

    kind = "autoencoder"
    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) prepared images -> (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, C, h, w) in [0, 1] at the network's working size."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def embed(self, images: Any) -> Tensor:
        """Images -> (N, latent_dim) embeddings."""
        return self.encode(self.prepare(images, self.input_size()))

    @torch.no_grad()
    def reconstruct(self, images: Any) -> Tensor:
        """Images -> reconstructions at the model's native image size, in [0, 1]."""
        out = self(self.prepare(images, self.input_size()))
        if tuple(out.shape[2:]) != self.image_shape[1:]:
            out = F.interpolate(out, size=self.image_shape[1:], mode="bilinear",
                                antialias=True).clamp(0, 1)
        return out


@register("mlp")
class MLPAutoencoder(Autoencoder):
    """The course assignment's autoencoder: 784 -> 256 -> 128 -> latent -> 128 -> 256 -> 784
    for 28x28."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim)
        self.encoder = MLPEncoder(int(np.prod(self.image_shape)), latent_dim)
        self.decoder = MLPDecoder(latent_dim, self.image_shape)


@register("conv")
class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder at 32x32 (the default for colour images)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 width: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, width=width)
        self.encoder = ConvEncoder(self.image_shape[0], latent_dim, width)
        self.decoder = ConvDecoder(latent_dim, self.image_shape[0], width)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


AUTOENCODERS = family(Autoencoder)
