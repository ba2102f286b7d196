"""Separators: unmix m = (x1 + x2) / 2 into two images (two-decoder AE/VAE, U-Net, ResUNet)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.losses import gaussian_kl, reparameterize
from latentlab.models.base import CONV_SIZE, ImageModel, family, register
from latentlab.models.blocks import (
    BasicResidualBlock,
    ConvDecoder,
    ConvEncoder,
    SelfAttention2d,
    conv_block,
    up_block,
)


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
    the true d lies in that set. Subclasses implement `difference(m) -> (d, kl)`; kl is the
    per-sample KL term of a variational separator, zeros otherwise."""

    kind = "separator"

    def difference(self, m: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) mixtures in [0, 1] -> (d (B, C, H, W) float32, kl (B,)), in float32
        even where the training loop runs the network under bfloat16 autocast."""
        d, kl = self.difference(m)
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
    """The course assignment's design: one convolutional encoder to a latent vector, two
    decoders, one per source. Works at 32x32 (other sizes are resized on the way in and out)."""

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

    def difference(self, m: Tensor) -> tuple[Tensor, Tensor]:
        size = m.shape[-2:]
        x = m if tuple(size) == (CONV_SIZE, CONV_SIZE) else F.interpolate(
            m, size=(CONV_SIZE, CONV_SIZE), mode="bilinear", antialias=True)
        z, kl = self.latent(self.encoder(x))
        d = (self.decoder_1(z) - self.decoder_2(z)) / 2  # the projection of two free outputs
        if tuple(d.shape[-2:]) != tuple(size):
            d = F.interpolate(d.float(), size=tuple(size), mode="bilinear", antialias=True)
        return d, kl


@register("two-decoder-ae")
class TwoDecoderAESeparator(TwoDecoderSeparator):
    """`two-decoder-ae`: encoder -> latent -> two decoders."""


@register("two-decoder-vae")
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


@register("unet")
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

    def difference(self, m: Tensor) -> tuple[Tensor, Tensor]:
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


@register("resunet")
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

    def difference(self, m: Tensor) -> tuple[Tensor, Tensor]:
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
SEPARATORS = family(Separator)
