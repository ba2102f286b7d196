"""Building blocks shared by the model families: conv stages, MLP and conv encoders and
decoders, residual blocks, self-attention."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """The course assignment's MLP: pixels -> 256 -> 128 -> out_dim (optional dropout after
    each hidden layer)."""

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



class AirbenchEncoder(nn.Module):
    """airbench's CIFAR-10 network (Jordan 2024, airbench94), for CPUs: (B, C, H, W) ->
    (B, 4 * width) pooled features, H, W >= 8.

    A frozen 2x2 whitening convolution (fit_whitening sets it from training patches), then
    three groups of conv -> max pool -> BN -> GELU -> conv -> BN -> GELU at widths w, 4w, 4w:
    one convolution at full resolution where ResNet-9 has two, most arithmetic at 1/4 and
    1/8 of it, convolutions started as the identity (dirac). airbench uses w = 64."""

    def __init__(self, channels: int, width: int = 64, patch: int = 2) -> None:
        super().__init__()
        self.out_features = 4 * width
        self.whiten = nn.Conv2d(channels, 2 * channels * patch ** 2, patch, bias=True)
        self.whiten.weight.requires_grad = False  # fixed by fit_whitening; its bias trains
        layers: list[nn.Module] = [nn.GELU()]
        for c_in, c_out in ((self.whiten.out_channels, width), (width, 4 * width),
                            (4 * width, 4 * width)):
            first = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            second = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            for conv in (first, second):  # an implicit residual: start as the identity
                nn.init.dirac_(conv.weight.data[:conv.in_channels])
            layers += [first, nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.GELU(),
                       second, nn.BatchNorm2d(c_out), nn.GELU()]
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_whitening(self, images: Tensor, eps: float = 5e-4) -> None:
        """Set the first convolution to whiten the patches of images (N, C, H, W) float:
        each output channel one principal direction scaled to unit variance, and its
        negative beside it (the GELU that follows keeps both signs)."""
        c, (h, w) = images.shape[1], self.whiten.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1)  # N, C, H', W', h, w
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * h * w)
        mean = patches.mean(0)
        centred = patches - mean
        values, vectors = torch.linalg.eigh(centred.T @ centred / len(centred))
        scaled = (vectors / (values + eps).sqrt()).T.flip(0)  # largest variance first
        weight = torch.cat([scaled, -scaled]).reshape(self.whiten.weight.shape)
        self.whiten.weight.copy_(weight)
        assert self.whiten.bias is not None
        self.whiten.bias.copy_(-weight.flatten(1) @ mean)  # centred outputs

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.whiten(x))


class BasicResidualBlock(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut (He et al. 2016). identity=True zeroes the
    last BN scale, so the block starts as the identity on non-negative inputs (Goyal et al.
    2017)."""

    def __init__(self, channels: int, identity: bool = False) -> None:
        super().__init__()
        last = nn.BatchNorm2d(channels)
        if identity:
            nn.init.zeros_(last.weight)
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, 1, 1, bias=False), last)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))



class SelfAttention2d(nn.Module):
    """Multi-head self-attention over all positions of a small feature map, with a residual
    connection: lets the network decide which source is 'first' consistently across the
    whole image (Vaswani et al. 2017)."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = (self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
                   .transpose(-1, -2).unbind(1))  # each (B, heads, HW, C / heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))

