"""Networks. Every model maps images in [0, 1] to an embedding with `embed()`, kept separate
from heads and decoders (as timm separates features from heads), and carries `hparams()` so a
checkpoint can rebuild it. Register a model with @register to make it loadable by name."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.errors import UserError

MODELS: dict[str, type[ImageModel]] = {}
M = TypeVar("M", bound="type[ImageModel]")

CONV_SIZE = 32  # convolutional models work at 32x32; other sizes are resized on the way in


def register(cls: M) -> M:
    MODELS[cls.__name__] = cls
    return cls


class ImageModel(nn.Module):
    """Base class: remembers the image shape it was built for and converts inputs to it."""

    kind = "model"

    def __init__(self, image_shape: tuple[int, int, int], **hparams: Any) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self._hparams = {"image_shape": list(self.image_shape), **hparams}
        self.config: dict[str, Any] = {}
        self.class_names: list[str] = []

    def hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def input_size(self) -> tuple[int, int]:
        """(H, W) the network works at; training batches are resized to it."""
        return self.image_shape[1], self.image_shape[2]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare(self, images: Any, size: tuple[int, int] | None = None) -> Tensor:
        """Any image batch -> float (N, C, H, W) in [0, 1] with this model's channels and size.

        Accepts (N, C, H, W), one (C, H, W) image or one (H, W) grey image, as a tensor or
        numpy array; uint8 is scaled from 0..255. Channels are converted (grey <-> RGB, alpha
        dropped) and the size is changed with antialiased bilinear resampling.
        """
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, Tensor):
            raise UserError(f"images must be a tensor or numpy array, not {type(images).__name__}")
        if images.ndim == 2:
            images = images[None, None]
        elif images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.numel() == 0:
            raise UserError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255
        elif images.is_floating_point():
            images = images.float()
            if images.numel() and (images.min() < -0.01 or images.max() > 1.01):
                raise UserError("float images must lie in [0, 1]; divide 0..255 pixels by 255")
            images = images.clamp(0, 1)
        else:
            raise UserError(f"images must be uint8 or float, not {images.dtype}")
        images = images.to(self.device)
        channels = self.image_shape[0]
        if images.shape[1] == 4:
            images = images[:, :3]
        if images.shape[1] not in (1, 3):
            raise UserError(f"images must have 1, 3 or 4 channels, not {images.shape[1]}")
        if images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], device=images.device)
            images = (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        target = size or self.image_shape[1:]
        if tuple(images.shape[2:]) != tuple(target):
            images = F.interpolate(images, size=tuple(target), mode="bilinear",
                                   align_corners=False, antialias=True).clamp(0, 1)
        # channels-last runs convolutions about 1.5x faster on CPU and GPU alike
        return images.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- building blocks

def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, or a 4x4 one that halves the size when stride is 2."""
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """Doubles the size. A transposed convolution costs a third of upsample + 3x3 conv on CPU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MLPEncoder(nn.Module):
    """The seed's MLP: pixels -> 256 -> 128 -> out_dim (optional dropout after each hidden)."""

    def __init__(self, in_features: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(128, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """latent -> 128 -> 256 -> pixels, sigmoid output."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 128), nn.ReLU(inplace=True), nn.Linear(128, 256),
            nn.ReLU(inplace=True), nn.Linear(256, int(np.prod(image_shape))))

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.net(z)).view(-1, *self.image_shape)


class ConvEncoder(nn.Module):
    """(B, C, 32, 32) -> (B, out_dim): three stride-2 stages, 32 -> 16 -> 8 -> 4."""

    def __init__(self, channels: int, out_dim: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(channels, width), conv_block(width, width * 2, 2),  # 16x16
            conv_block(width * 2, width * 4, 2),  # 8x8
            conv_block(width * 4, width * 8, 2),  # 4x4
            nn.Flatten())
        self.head = nn.Linear(width * 8 * 16, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> (B, C, 32, 32) in [0, 1]: the encoder mirrored."""

    def __init__(self, latent_dim: int, channels: int, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.project = nn.Sequential(nn.Linear(latent_dim, width * 8 * 16), nn.ReLU(inplace=True))
        self.net = nn.Sequential(
            up_block(width * 8, width * 4),  # 8x8
            up_block(width * 4, width * 2),  # 16x16
            up_block(width * 2, width),  # 32x32
            nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(-1, self.width * 8, 4, 4)
        return torch.sigmoid(self.net(h))


def resolve_encoder(encoder: str, image_shape: tuple[int, int, int]) -> str:
    """'auto' picks conv for colour images and mlp for grey ones."""
    if encoder == "auto":
        return "conv" if image_shape[0] == 3 else "mlp"
    return encoder


# ----------------------------------------------------------------------------- autoencoders

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


@register
class MLPAutoencoder(Autoencoder):
    """The seed's autoencoder: 784 -> 256 -> 128 -> latent -> 128 -> 256 -> 784 for 28x28."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim)
        self.encoder = MLPEncoder(int(np.prod(self.image_shape)), latent_dim)
        self.decoder = MLPDecoder(latent_dim, self.image_shape)


@register
class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder at 32x32 (the default for colour images)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 width: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, width=width)
        self.encoder = ConvEncoder(self.image_shape[0], latent_dim, width)
        self.decoder = ConvDecoder(latent_dim, self.image_shape[0], width)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


AUTOENCODERS: dict[str, type[Autoencoder]] = {"mlp": MLPAutoencoder, "conv": ConvAutoencoder}


# ----------------------------------------------------------------------------- contrastive encoders

class ResidualBlock(nn.Module):
    """x + two 3x3 conv-BN-ReLU layers, same width and size (ResNet-9's residual unit)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(width, width), conv_block(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNetEncoder(nn.Module):
    """A small CIFAR ResNet (ResNet-9 of Page 2018, as in the DAWNBench/airbench lineage),
    width-scaled for CPUs: (B, C, H, W) -> (B, 8 * width) pooled features.

    stem conv (width) -> conv (2w), pool, residual -> conv (4w), pool -> conv (8w), pool,
    residual -> global max pool. Any H, W >= 8 works (training crops may be smaller than 32)."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.out_features = 8 * width
        self.net = nn.Sequential(
            conv_block(channels, width), conv_block(width, 2 * width), nn.MaxPool2d(2),  # H/2
            ResidualBlock(2 * width),
            conv_block(2 * width, 4 * width), nn.MaxPool2d(2),  # H/4
            conv_block(4 * width, 8 * width), nn.MaxPool2d(2),  # H/8
            ResidualBlock(8 * width),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ContrastiveModel(ImageModel):
    """An encoder trained by a contrastive loss.

    `embed()` (and `forward()`, which keeps gradients) returns L2-normalised (B, latent_dim)
    embeddings: the margin loss works on them directly. SupCon and SimCLR put a projection
    head on top (`project()`), as Chen et al. 2020 do, and evaluate the embedding below it,
    which transfers better; the head is never part of `embed()`."""

    kind = "contrastive"
    backbone: nn.Module
    head: nn.Module | None

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
        return self(self.prepare(images, self.input_size()))


@register
class MLPContrastive(ContrastiveModel):
    """The seed's network: pixels -> 256 -> dropout -> 128 -> dropout -> latent_dim."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, dropout: float = 0.1) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, projection_dim=projection_dim,
                         dropout=dropout)
        self.backbone = MLPEncoder(int(np.prod(self.image_shape)), latent_dim, dropout)
        self.build_head(latent_dim, projection_dim)


@register
class ConvContrastive(ContrastiveModel):
    """The autoencoder's convolutional encoder at 32x32 (the default for colour images)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, width: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, projection_dim=projection_dim,
                         width=width)
        self.backbone = ConvEncoder(self.image_shape[0], latent_dim, width)
        self.build_head(latent_dim, projection_dim)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


@register
class ResNetContrastive(ContrastiveModel):
    """ResNetEncoder features -> linear -> latent_dim: the encoder for the CIFAR benchmark."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 projection_dim: int = 0, width: int = 16) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, projection_dim=projection_dim,
                         width=width)
        features = ResNetEncoder(self.image_shape[0], width)
        self.backbone = nn.Sequential(features, nn.Linear(features.out_features, latent_dim))
        self.build_head(latent_dim, projection_dim)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


CONTRASTIVE_MODELS: dict[str, type[ContrastiveModel]] = {
    "mlp": MLPContrastive, "conv": ConvContrastive, "resnet": ResNetContrastive}
