"""Networks. Every model maps images in [0, 1] to an embedding with `embed()`, kept separate
from heads and decoders (as timm separates features from heads), and carries `hparams()` so a
checkpoint can rebuild it. Register a model with @register to make it loadable by name."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.errors import UserError
from latentlab.losses import discretized_logistic_log_likelihood, gaussian_kl, reparameterize

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

    def prepare(self, images: Any, size: tuple[int, int] | None = None,
                checked: bool = True) -> Tensor:
        """Any image batch -> float (N, C, H, W) in [0, 1] with this model's channels and size.

        Accepts (N, C, H, W), one (C, H, W) image or one (H, W) grey image, as a tensor or
        numpy array, or a PIL image; uint8 is scaled from 0..255. Numpy arrays may also be
        channels-last, (H, W, C) or (N, H, W, C), as PIL, imageio and matplotlib give them.
        Channels are converted (grey <-> RGB, alpha dropped) and the size is changed with
        antialiased bilinear resampling. checked=False skips the checks of float values,
        which wait for a GPU to finish its queued work: for batches of a loaded dataset,
        whose values are known to be valid.
        """
        if isinstance(images, PIL.Image.Image):
            if images.mode != "L":
                images = images.convert("RGBA" if "A" in images.getbands() else "RGB")
            images = np.asarray(images)
        if isinstance(images, np.ndarray):
            if images.ndim >= 3 and images.shape[-1] in (1, 3, 4) and images.shape[-3] not in (
                    1, 3, 4):  # channels-last: the last axis is the only one that can be C
                images = np.moveaxis(images, -1, -3)
            images = torch.from_numpy(np.array(images))  # a copy: the array may be read-only
        if not isinstance(images, Tensor):
            raise UserError("images must be a tensor, numpy array or PIL image, not "
                            f"{type(images).__name__}")
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
            if checked and not torch.isfinite(images).all():
                raise UserError("images contain NaN or infinite values")
            if checked and (images.min() < -0.01 or images.max() > 1.01):
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


def resolve_family(families: dict[str, Any], encoder: str, image_shape: tuple[int, int, int],
                   what: str) -> str:
    """--encoder resolved for the image, checked against the families `what` offers."""
    name = resolve_encoder(encoder, image_shape)
    if name not in families:
        raise UserError(f"--encoder {name} is not available for {what}; "
                        f"choose {', '.join(families)} or auto")
    return name


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


# ----------------------------------------------------------------------------- variational

class RawMLPDecoder(MLPDecoder):
    """MLPDecoder without the sigmoid: the VAE reads likelihood parameters from its output."""

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.image_shape)


class RawConvDecoder(ConvDecoder):
    """ConvDecoder without the sigmoid: the VAE reads likelihood parameters from its output."""

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(-1, self.width * 8, 4, 4))


def likelihood_channels(channels: int) -> int:
    """Decoder outputs per pixel: a mean and a log-scale per channel, plus for RGB the three
    coefficients that let green depend on red and blue on red and green (PixelCNN++)."""
    return 2 * channels + (3 if channels == 3 else 0)


class CausalConv2d(nn.Conv2d):
    """A convolution that sees only pixels above, and to the left on the same row (van den
    Oord et al. 2016). Mask "A" also hides the centre pixel (first layer); "B" lets it in."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask: str = "B") -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        keep = torch.ones_like(self.weight)
        centre = kernel // 2
        keep[:, :, centre, centre + (mask == "B"):] = 0
        keep[:, :, centre + 1:] = 0
        self.keep: Tensor
        self.register_buffer("keep", keep, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.keep, self.bias, padding=self.padding)


CONTEXT_REACH = 3  # causal_context sees 3 rows up and 3 columns either side (5x5 then 3x3)


def causal_context(channels: int, width: int) -> nn.Sequential:
    """Likelihood offsets from the already-seen pixels within 3 rows/columns: a local
    autoregressive decoder in the spirit of the Variational Lossy Autoencoder (Chen et al.
    2017). Its view is too small to model shapes, so the latent still has to carry them."""
    return nn.Sequential(CausalConv2d(channels, width, 5, "A"), nn.ReLU(inplace=True),
                         CausalConv2d(width, width, 3, "B"), nn.ReLU(inplace=True),
                         nn.Conv2d(width, likelihood_channels(channels), 1))


class VariationalAutoencoder(ImageModel):
    """q(z|x) = N(mean(x), diag(exp(log_variance(x)))), p(z) = N(0, I) (Kingma and Welling 2014).

    The likelihood p(x|z) is a discretised logistic per pixel channel (Salimans et al. 2017,
    one component) whose mean and scale the decoder predicts for every pixel; for RGB the
    mean of green moves linearly with red, and blue with red and green, so colour noise
    shared across channels is paid for once. It gives probabilities of 8-bit values, so the
    negative ELBO in bits per dimension compares with the literature. embed() returns the
    posterior mean; decode() and sample() return the likelihood's mean image in [0, 1]."""

    kind = "vae"
    encoder: nn.Module  # image -> (B, 2 * latent_dim): posterior mean and log-variance
    decoder: nn.Module  # latent -> (B, likelihood_channels(C), h, w)
    context: nn.Module | None  # seen pixels -> offsets to those outputs, or None

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 **hparams: Any) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, **hparams)
        self.latent_dim = latent_dim
        self.context = None

    def dims(self) -> int:
        """Pixel channels the likelihood covers (bits/dim divides by this)."""
        return self.image_shape[0] * self.input_size()[0] * self.input_size()[1]

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, h, w) prepared images -> mean (B, D), log-variance (B, D)."""
        mean, log_variance = self.encoder(x).float().chunk(2, dim=1)  # float32 under autocast
        return mean, log_variance.clamp(-15, 10)  # exp() stays finite in float32

    def likelihood(self, z: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, D) -> mean, log-scale (B, C, h, w) in [-1, 1] pixel units, channel coefficients
        (B, 3, h, w) for RGB or (B, 0, h, w). With a causal context, x (B, C, h, w) in [-1, 1]
        holds the pixels seen so far (only those above and to the left are used)."""
        return self.split(self.decoder(z) if x is None or self.context is None
                          else self.decoder(z) + self.context(x))

    def split(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = out.float()  # the likelihood needs float32 even under bf16 autocast
        c = self.image_shape[0]
        mean, log_scale, coefficients = out[:, :c], out[:, c: 2 * c], out[:, 2 * c:]
        return mean, log_scale.clamp_min(-7.0), torch.tanh(coefficients)

    @staticmethod
    def coupled_mean(mean: Tensor, coefficients: Tensor, x: Tensor) -> Tensor:
        """Means of green given red and blue given red and green (identity for grey)."""
        if coefficients.shape[1] == 0:
            return mean
        red, green = x[:, 0:1], x[:, 1:2]
        return torch.cat([mean[:, 0:1],
                          mean[:, 1:2] + coefficients[:, 0:1] * red,
                          mean[:, 2:3] + coefficients[:, 1:2] * red + coefficients[:, 2:3] * green],
                         dim=1)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """-log p(x|z) in nats per image: x (B, C, h, w) in [0, 1], z (B, D) -> (B,)."""
        target = torch.round(x * 255) / 127.5 - 1  # the 8-bit grid in [-1, 1]
        mean, log_scale, coefficients = self.likelihood(z, target)
        mean = self.coupled_mean(mean, coefficients, target)
        return -discretized_logistic_log_likelihood(target, mean, log_scale).flatten(1).sum(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prepared images (B, C, h, w) -> (-log p(x|z) (B,), KL(q(z|x) || p(z)) (B,)), nats,
        with one reparameterised sample z ~ q(z|x)."""
        mean, log_variance = self.posterior(x)
        z = reparameterize(mean, log_variance)
        return self.reconstruction_nll(x, z), gaussian_kl(mean, log_variance)

    def decode(self, z: Tensor, noise: bool = False) -> Tensor:
        """(B, D) -> (B, C, h, w) in [0, 1]: the likelihood's mean image, or with noise=True a
        draw from it (red first, since green and blue depend on it). With a causal context
        pixels are decoded one at a time in raster order: h * w small steps."""
        if self.context is None:
            x = self.draw(*self.likelihood(z), noise)
        else:
            decoded = self.decoder(z)
            x = torch.zeros(len(z), self.image_shape[0], *decoded.shape[2:], device=z.device)
            threads = torch.get_num_threads()
            if z.device.type == "cpu":  # thousands of tiny steps: thread hand-offs cost more
                torch.set_num_threads(1)
            try:
                self.decode_pixels(decoded, x, noise)
            finally:
                torch.set_num_threads(threads)
        images = (x + 1) / 2
        return torch.round(images * 255) / 255 if noise else images

    def decode_pixels(self, decoded: Tensor, x: Tensor, noise: bool) -> None:
        """Fill the canvas x (B, C, h, w) in raster order, each pixel from those before it."""
        assert self.context is not None
        r = CONTEXT_REACH
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                # the context at (i, j) only needs this window of the canvas
                top, left = max(0, i - r), max(0, j - r)
                seen = self.context(x[:, :, top: i + 1, left: j + r + 1])
                out = decoded[:, :, i: i + 1, j: j + 1] + seen[:, :, -1:, j - left: j - left + 1]
                x[:, :, i: i + 1, j: j + 1] = self.draw(*self.split(out), noise)

    @staticmethod
    def draw(mean: Tensor, log_scale: Tensor, coefficients: Tensor, noise: bool) -> Tensor:
        """Pixels in [-1, 1] from the likelihood's parameters: the mean, or a logistic draw."""

        def one(m: Tensor, channels: slice) -> Tensor:
            if noise:  # inverse-CDF draw of a logistic
                u = torch.rand_like(m).clamp(1e-5, 1 - 1e-5)
                m = m + log_scale[:, channels].exp() * (torch.log(u) - torch.log1p(-u))
            return m.clamp(-1, 1)

        if coefficients.shape[1] == 0:
            return one(mean, slice(None))
        a = coefficients
        red = one(mean[:, 0:1], slice(0, 1))
        green = one(mean[:, 1:2] + a[:, 0:1] * red, slice(1, 2))
        blue = one(mean[:, 2:3] + a[:, 1:2] * red + a[:, 2:3] * green, slice(2, 3))
        return torch.cat([red, green, blue], 1)

    def to_image_size(self, images: Tensor) -> Tensor:
        if tuple(images.shape[2:]) != self.image_shape[1:]:
            images = F.interpolate(images, size=self.image_shape[1:], mode="bilinear",
                                   antialias=True).clamp(0, 1)
        return images

    @torch.no_grad()
    def embed(self, images: Any) -> Tensor:
        """Images -> (N, latent_dim) posterior means."""
        return self.posterior(self.prepare(images, self.input_size()))[0]

    @torch.no_grad()
    def reconstruct(self, images: Any) -> Tensor:
        """Images -> decoded posterior means at the model's image size, in [0, 1]."""
        return self.to_image_size(self.decode(self.embed(images)))

    @torch.no_grad()
    def sample(self, n: int, noise: bool = False, seed: int | None = None) -> Tensor:
        """n new images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.to_image_size(self.decode(z, noise=noise))


@register
class MLPVAE(VariationalAutoencoder):
    """The seed's MLP with a Gaussian posterior: pixels -> 256 -> 128 -> (mean, log-variance)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32) -> None:
        super().__init__(image_shape, latent_dim)
        c, h, w = self.image_shape
        self.encoder = MLPEncoder(c * h * w, 2 * latent_dim)
        self.decoder = RawMLPDecoder(latent_dim, (likelihood_channels(c), h, w))


@register
class ConvVAE(VariationalAutoencoder):
    """Convolutional VAE at 32x32 (the default for colour images). context > 0 adds a causal
    context network of that width to the likelihood (better bits/dim, slow sampling)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32,
                 width: int = 32, context: int = 0) -> None:
        super().__init__(image_shape, latent_dim, width=width, context=context)
        c = self.image_shape[0]
        self.encoder = ConvEncoder(c, 2 * latent_dim, width)
        self.decoder = RawConvDecoder(latent_dim, likelihood_channels(c), width)
        if context:
            self.context = causal_context(c, context)

    def input_size(self) -> tuple[int, int]:
        return CONV_SIZE, CONV_SIZE


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


VAES: dict[str, type[VariationalAutoencoder]] = {"mlp": MLPVAE, "conv": ConvVAE}


# ----------------------------------------------------------------------------- separators

def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively (CPUs with AVX-512 BF16 or AMX, recent GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad (B, C, H, W) on the bottom and right up to multiples of `multiple`."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def small_init(layer: nn.Conv2d, scale: float = 0.1) -> None:
    """Shrink an output layer so a new separator starts near d = 0 (the mixture-baseline
    answer). Not exactly 0: at d = 0 both assignments tie and the two sources' gradients
    cancel, so the symmetry between them is broken by the initial weights."""
    with torch.no_grad():
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.zero_()


class Separator(ImageModel):
    """Unmixes m = (x1 + x2) / 2 into two images. Which output is which is arbitrary.

    Every separator estimates d = (x1 - x2) / 2 (up to sign) and answers m + d and m - d, so
    (x1_hat + x2_hat) / 2 == m exactly. `separate()` also clamps d to |d| <= min(m, 1 - m),
    the set where both outputs are valid images; the clamp can only lower the error, since
    the true d lies in that set. Subclasses implement `split(m) -> (d, kl)`; kl is the
    per-sample KL term of a variational separator, zeros otherwise."""

    kind = "separator"
    mixed_precision = True  # bfloat16 convolutions where the hardware runs them natively

    def split(self, m: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) mixtures in [0, 1] -> (d (B, C, H, W) float32, kl (B,))."""
        device = m.device
        enabled = self.mixed_precision and bf16_supported(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            d, kl = self.split(m)
        return d.float(), kl.float()

    @staticmethod
    def project(m: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs that average to m and are both in [0, 1]: m +- d with d clamped."""
        reach = torch.minimum(m, 1 - m)
        d = torch.maximum(torch.minimum(d, reach), -reach)
        return m + d, m - d

    def estimates(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """Prepared (B, C, H, W) mixtures -> projected (x1_hat, x2_hat)."""
        return self.project(m, self(m)[0])

    @torch.no_grad()
    def separate(self, mixtures: Any) -> tuple[Tensor, Tensor]:
        """Mixtures (any size, channels, uint8 or float in [0, 1]) -> (x1_hat, x2_hat), each
        (N, C, H, W) in [0, 1] at the model's image size, with (x1_hat + x2_hat) / 2 equal to
        the (converted) mixture."""
        was_training = self.training
        self.eval()
        try:
            return self.estimates(self.prepare(mixtures, self.input_size()))
        finally:
            self.train(was_training)


class TwoDecoderSeparator(Separator):
    """The seed's design: one convolutional encoder to a latent vector, two decoders, one
    per source. Works at 32x32 (other sizes are resized on the way in and out)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 256,
                 width: int = 32) -> None:
        super().__init__(image_shape, latent_dim=latent_dim, width=width)
        channels = self.image_shape[0]
        self.encoder = ConvEncoder(channels, self.latent_outputs(latent_dim), width)
        self.decoder_1 = ConvDecoder(latent_dim, channels, width)
        self.decoder_2 = ConvDecoder(latent_dim, channels, width)

    def latent_outputs(self, latent_dim: int) -> int:
        return latent_dim

    def latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder output -> (latent (B, D), kl (B,))."""
        return h, h.new_zeros(len(h))

    def split(self, m: Tensor) -> tuple[Tensor, Tensor]:
        size = m.shape[-2:]
        x = m if tuple(size) == (CONV_SIZE, CONV_SIZE) else F.interpolate(
            m, size=(CONV_SIZE, CONV_SIZE), mode="bilinear", antialias=True)
        z, kl = self.latent(self.encoder(x))
        d = (self.decoder_1(z) - self.decoder_2(z)) / 2  # the projection of two free outputs
        if tuple(d.shape[-2:]) != tuple(size):
            d = F.interpolate(d.float(), size=tuple(size), mode="bilinear", antialias=True)
        return d, kl


@register
class TwoDecoderAESeparator(TwoDecoderSeparator):
    """`two-decoder-ae`: encoder -> latent -> two decoders."""


@register
class TwoDecoderVAESeparator(TwoDecoderSeparator):
    """`two-decoder-vae`: the same with a Gaussian latent; training adds beta * KL
    (Kingma and Welling 2014). Uses the latent mean at evaluation."""

    def latent_outputs(self, latent_dim: int) -> int:
        return 2 * latent_dim

    def latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_variance = h.float().chunk(2, dim=1)
        log_variance = log_variance.clamp(-20, 10)
        z = reparameterize(mean, log_variance) if self.training else mean
        return z, gaussian_kl(mean, log_variance)


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


@register
class UNetSeparator(Separator):
    """`unet`: the U-Net of Ronneberger et al. (2015) at small width. Two 3x3 conv-BN-ReLU per
    level, max-pool down, transposed conv up, skips concatenated; 32 -> 16 -> 8 -> 4.
    bottleneck_blocks residual blocks at the lowest resolution add depth where it is cheap;
    each starts as the identity, so a trained U-Net grows into a deeper one without losing
    what it learned (--init-from). class_head > 0 adds a linear layer on the pooled
    bottleneck that scores which of that many classes the mixture holds (`logits`, kept
    from the last forward pass): an auxiliary task for training (--class-weight), unused when
    separating."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32, depth: int = 3,
                 bottleneck_blocks: int = 0, class_head: int = 0) -> None:
        # left out at 0, so the hparams of U-Nets saved before the options still match
        options = {"bottleneck_blocks": bottleneck_blocks} if bottleneck_blocks else {}
        if class_head:
            options["class_head"] = class_head
        super().__init__(image_shape, width=width, depth=depth, **options)
        channels = self.image_shape[0]
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.stem = nn.Sequential(conv_block(channels, width), conv_block(width, width))
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), conv_block(widths[i], widths[i + 1]),
                          conv_block(widths[i + 1], widths[i + 1])) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2)
                                for i in reversed(range(depth)))
        self.merge = nn.ModuleList(
            nn.Sequential(conv_block(2 * widths[i], widths[i]), conv_block(widths[i], widths[i]))
            for i in reversed(range(depth)))
        self.bottleneck = nn.Sequential(
            *[BasicResidualBlock(widths[-1], identity=True) for _ in range(bottleneck_blocks)])
        self.head = nn.Conv2d(width, channels, 1)
        small_init(self.head)
        # made last, so the other layers start as they would without it
        self.class_head = nn.Linear(widths[-1], class_head) if class_head else None
        self.logits: Tensor | None = None

    @torch.no_grad()
    def grow_from(self, state: dict[str, Tensor]) -> None:
        """Load the state of a trained U-Net of the same depth and at most this width so that
        this one computes the same d. Each old channel keeps its place (the skip half of a
        merge's input moves to where the skip half starts at this width), and every weight
        that reads a new channel starts at zero: the new channels change nothing until
        training puts them to use (a zero fan-in variant of Net2WiderNet, Chen et al. 2016).
        Layers that state lacks (new bottleneck blocks, a new class head) keep their init."""
        # the first convolution of each merge reads cat([up, skip])
        merges = {id(next(m for m in merge.modules() if isinstance(m, nn.Conv2d)))
                  for merge in self.merge}
        modules = dict(self.named_modules())
        for key, new in self.state_dict().items():  # these share storage with the model
            if key not in state:
                continue
            old = state[key].to(new.device)
            if old.shape == new.shape:
                new.copy_(old)
                continue
            module = modules[key.rpartition(".")[0]]
            if old.dim() == 1:  # BatchNorm statistics and scales, biases: one per channel
                new[:len(old)] = old
                continue
            out_dim, in_dim = (1, 0) if isinstance(module, nn.ConvTranspose2d) else (0, 1)
            read, half = old.shape[in_dim], new.shape[in_dim] // 2
            kept = torch.arange(read, device=new.device)
            if id(module) in merges:
                kept = torch.cat([kept[:read // 2], half + kept[:read // 2]])
            added = torch.ones(new.shape[in_dim], dtype=torch.bool, device=new.device)
            added[kept] = False
            new.index_fill_(in_dim, added.nonzero().squeeze(1), 0)
            rows = torch.arange(old.shape[out_dim], device=new.device)
            block = new.index_select(out_dim, rows).index_copy(in_dim, kept, old)
            new.index_copy_(out_dim, rows, block)

    def split(self, m: Tensor) -> tuple[Tensor, Tensor]:
        h, w = m.shape[-2:]
        x = self.stem(pad_to_multiple(m, 2**self.depth))
        skips = [x]
        for down in self.down:
            x = down(x)
            skips.append(x)
        skips.pop()
        x = self.bottleneck(x)
        if self.class_head is not None:
            self.logits = self.class_head(x.float().mean((2, 3)))
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)[..., :h, :w], m.new_zeros(len(m))


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


@register
class ResUNetSeparator(Separator):
    """`resunet`: a residual U-Net built for CPU throughput. A pixel-unshuffle stem works at
    half resolution from the start (32x32x3 -> 16x16x12, lossless), residual blocks at
    16 -> 8 -> 4, self-attention at the bottleneck for a globally consistent choice of which
    source comes first, skips added, and a pixel-shuffle head back to full resolution."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64,
                 blocks: tuple[int, ...] | list[int] = (2, 2, 2), heads: int = 4) -> None:
        blocks = [int(b) for b in blocks]
        super().__init__(image_shape, width=width, blocks=blocks, heads=heads)
        channels = self.image_shape[0]
        widths = [width * 2**i for i in range(len(blocks))]
        self.stem = conv_block(4 * channels, width)
        self.encoder = nn.ModuleList(
            nn.Sequential(*[BasicResidualBlock(widths[i]) for _ in range(n)])
            for i, n in enumerate(blocks))
        self.down = nn.ModuleList(conv_block(widths[i], widths[i + 1], stride=2)
                                  for i in range(len(blocks) - 1))
        self.middle = nn.Sequential(SelfAttention2d(widths[-1], heads),
                                    BasicResidualBlock(widths[-1]))
        self.up = nn.ModuleList(up_block(widths[i + 1], widths[i])
                                for i in reversed(range(len(blocks) - 1)))
        self.decoder = nn.ModuleList(
            nn.Sequential(*[BasicResidualBlock(widths[i]) for _ in range(blocks[i])])
            for i in reversed(range(len(blocks) - 1)))
        self.head = nn.Conv2d(width, 4 * channels, 3, 1, 1)
        small_init(self.head)
        self.multiple = 2 ** len(blocks)

    def split(self, m: Tensor) -> tuple[Tensor, Tensor]:
        h, w = m.shape[-2:]
        x = self.stem(F.pixel_unshuffle(pad_to_multiple(m, self.multiple), 2))
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i < len(self.down):
                skips.append(x)
                x = self.down[i](x)
        x = self.middle(x)
        for up, stage in zip(self.up, self.decoder):
            x = stage(up(x) + skips.pop())
        d = F.pixel_shuffle(self.head(x), 2)
        return d[..., :h, :w], m.new_zeros(len(m))


# `--model` name -> separator class
SEPARATORS: dict[str, type[Separator]] = {
    "two-decoder-ae": TwoDecoderAESeparator,
    "two-decoder-vae": TwoDecoderVAESeparator,
    "unet": UNetSeparator,
    "resunet": ResUNetSeparator,
}


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
