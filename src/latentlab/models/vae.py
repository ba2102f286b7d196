"""Variational autoencoders with a discretised-logistic likelihood head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.losses import discretized_logistic_log_likelihood, gaussian_kl, reparameterize
from latentlab.models.base import CONV_SIZE, ImageModel, family, register
from latentlab.models.blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


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
        return self.unpack(self.decoder(z) if x is None or self.context is None
                          else self.decoder(z) + self.context(x))

    def unpack(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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
                x[:, :, i: i + 1, j: j + 1] = self.draw(*self.unpack(out), noise)

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


@register("mlp")
class MLPVAE(VariationalAutoencoder):
    """The course's MLP with a Gaussian posterior: pixels -> 256 -> 128 -> (mean, log-variance)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32) -> None:
        super().__init__(image_shape, latent_dim)
        c, h, w = self.image_shape
        self.encoder = MLPEncoder(c * h * w, 2 * latent_dim)
        self.decoder = RawMLPDecoder(latent_dim, (likelihood_channels(c), h, w))


@register("conv")
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



VAES = family(VariationalAutoencoder)
