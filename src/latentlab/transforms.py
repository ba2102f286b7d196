"""Augmentations on whole batches: float (B, C, H, W) in [0, 1] -> the same, each image with
its own random parameters, vectorised over the batch (no Python loop over images).

torchvision.transforms.v2 applied to a batched tensor draws ONE set of random parameters for
the whole batch (every image gets the same crop), which defeats contrastive learning. So the
random parts are drawn here per image and applied with affine_grid/grid_sample and
per-image factors, following torchvision's formulas (ColorJitter, RandomResizedCrop,
RandomGrayscale). Random numbers come from `generator`, else torch's global generator
(which the training loop seeds and checkpoints)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Augmentation = Callable[[Tensor], Tensor]


def uniform(n: int, low: float, high: float, like: Tensor,
            generator: torch.Generator | None = None) -> Tensor:
    """(n,) uniform samples in [low, high) on like's device, in its dtype when that is a
    floating type (float32 for integer images)."""
    u = torch.rand(n, generator=generator, device=generator.device if generator else "cpu")
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return (low + (high - low) * u).to(device=like.device, dtype=dtype)


def resample(images: Tensor, theta: Tensor, size: tuple[int, int] | None,
             padding_mode: str) -> Tensor:
    """Sample each image at an affine grid: theta (B, 2, 3) maps output to input coordinates."""
    b, c, h, w = images.shape
    height, width = size or (h, w)
    grid = F.affine_grid(theta, [b, c, height, width], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode,
                        align_corners=False)
    return out.clamp(0, 1)


def random_resized_crop(images: Tensor, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                        size: tuple[int, int] | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """Per image: a crop covering a random fraction `scale` of the area with a random aspect
    ratio, at a random place, mirrored left-right with probability flip_p, resized to size
    (default: the input size). (B, C, H, W) -> (B, C, *size)."""
    b = len(images)
    area = uniform(b, *scale, images, generator)
    aspect = uniform(b, math.log(ratio[0]), math.log(ratio[1]), images, generator).exp()
    width = (area * aspect).sqrt().clamp(max=1)  # fraction of the image width
    height = (area / aspect).sqrt().clamp(max=1)
    flip = torch.where(uniform(b, 0, 1, images, generator) < flip_p, -1.0, 1.0).to(images)
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = uniform(b, -1, 1, images, generator) * (1 - width)  # crop centre x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = uniform(b, -1, 1, images, generator) * (1 - height)  # crop centre y
    return resample(images, theta, size, "reflection")


def random_translate(images: Tensor, max_shift: int = 4, flip_p: float = 0.5,
                     generator: torch.Generator | None = None,
                     padding_mode: str = "zeros") -> Tensor:
    """Per image: shift by a whole number of pixels in [-max_shift, max_shift] each way,
    filling with zeros (the classic pad-and-crop of CIFAR training) or, with padding_mode
    "reflection", with the mirrored edge, and mirror left-right with probability flip_p.
    Whole-pixel shifts keep the image sharp. (B, C, H, W) -> same."""
    b, _, h, w = images.shape
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    flip = torch.where(uniform(b, 0, 1, images, generator) < flip_p, -1.0, 1.0).to(images)
    shift_x = (uniform(b, 0, 2 * max_shift + 1, images, generator).floor() - max_shift)
    shift_y = (uniform(b, 0, 2 * max_shift + 1, images, generator).floor() - max_shift)
    theta[:, 0, 0] = flip
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = shift_x * 2 / w  # one pixel is 2 / w in grid coordinates
    theta[:, 1, 2] = shift_y * 2 / h
    return resample(images, theta, None, padding_mode)


def random_crop(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Per image: a size x size window at a random whole-pixel place, copied exactly (no
    resampling). (B, C, H, W) -> (B, C, size, size)."""
    b, c, h, w = images.shape
    steps = torch.arange(size, device=images.device)

    def window(length: int) -> Tensor:  # (B, size): each image's indices along one axis
        start = uniform(b, 0, length - size + 1, images, generator).floor().long()
        return start[:, None] + steps

    rows, cols = window(h), window(w)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale uses
LUMA = torch.tensor([0.2989, 0.587, 0.114])


def grayscale(images: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; one einsum, three times faster than torchvision's
    rgb_to_grayscale on CPU."""
    return torch.einsum("c,bchw->bhw", LUMA.to(images), images).unsqueeze(1)


def blend(first: Tensor, second: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's _blend with a per-image ratio (B,): ratio * first + (1 - ratio) * second."""
    ratio = ratio.view(-1, 1, 1, 1)
    return (ratio * first + (1 - ratio) * second).clamp(0, 1)


# RGB <-> YIQ: a hue change is a rotation of the (I, Q) chroma plane.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                           [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]])


def rotate_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Shift the hue of each RGB image by shift (B,) turns (-0.5..0.5), as a rotation in YIQ
    space: one (3, 3) colour matrix per image, close to torchvision's HSV adjust_hue."""
    to_yiq = RGB_TO_YIQ.to(images)
    angle = shift * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(len(images), 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, images).clamp(0, 1)


def color_jitter(images: Tensor, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, p: float = 0.8,
                 generator: torch.Generator | None = None) -> Tensor:
    """With probability p per image, scale brightness, contrast and saturation by factors
    drawn from [1 - s, 1 + s] and shift hue by up to `hue` turns (torchvision's ColorJitter,
    in a fixed order). Saturation and hue apply to RGB images only. (B, C, H, W) -> same."""
    b = len(images)
    active = uniform(b, 0, 1, images, generator) < p  # (B,)

    def factor(strength: float) -> Tensor:
        drawn = uniform(b, max(0.0, 1 - strength), 1 + strength, images, generator)
        return torch.where(active, drawn, torch.ones_like(drawn))

    out = (images * factor(brightness).view(-1, 1, 1, 1)).clamp(0, 1)
    grey = grayscale(out) if out.shape[1] == 3 else out
    out = blend(out, grey.mean(dim=(1, 2, 3), keepdim=True), factor(contrast))
    if out.shape[1] == 3:
        out = blend(out, grayscale(out), factor(saturation))
        shift = uniform(b, -hue, hue, images, generator) * active
        out = rotate_hue(out, shift)
    return out


def random_grayscale(images: Tensor, p: float = 0.2,
                     generator: torch.Generator | None = None) -> Tensor:
    """Turn each RGB image grey (kept as 3 channels) with probability p. (B, C, H, W) -> same."""
    if images.shape[1] != 3:
        return images
    chosen = (uniform(len(images), 0, 1, images, generator) < p).view(-1, 1, 1, 1)
    return torch.where(chosen, grayscale(images).expand_as(images), images)


def simclr_augment(images: Tensor, generator: torch.Generator | None = None,
                   size: tuple[int, int] | None = None) -> Tensor:
    """SimCLR's CIFAR recipe (Chen et al. 2020, appendix B.9): random resized crop with
    flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, greyscale with p 0.2; no blur at
    32x32. (B, C, H, W) in [0, 1] -> (B, C, *size), default the input size."""
    out = random_resized_crop(images, scale=(0.2, 1.0), size=size, generator=generator)
    out = color_jitter(out, generator=generator)
    return random_grayscale(out, generator=generator)


def light_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flips and 4-pixel translations: the standard supervised CIFAR augmentation."""
    return random_translate(images, max_shift=max(1, images.shape[-1] // 8), generator=generator)


def shift_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flips and shifts of up to 1/8 of the width (4 pixels at 32x32), the edge mirrored into
    the gap: for separators, whose test mixtures never hold the black band a zero fill leaves
    in one source."""
    return random_translate(images, max_shift=max(1, images.shape[-1] // 8),
                            generator=generator, padding_mode="reflection")


def flip_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability 1/2. Exact (no resampling), so it keeps
    uint8 images uint8. (B, C, H, W) -> same."""
    flip = uniform(len(images), 0, 1, images, generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def no_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return images


AUGMENTATIONS: dict[str, Callable[..., Tensor]] = {
    "none": no_augment, "flips": flip_augment, "light": light_augment, "shifts": shift_augment,
    "simclr": simclr_augment}


class Views:
    """The training views: `small` ones while the schedule's progress is short of `until`,
    then `whole` ones (progressive resizing: cheap early epochs, the last at full size).
    The training loop reports the progress through `at` (Steps.on_progress)."""

    def __init__(self, whole: Callable[[Tensor], Tensor], small: Callable[[Tensor], Tensor],
                 until: float) -> None:
        self.whole, self.small, self.until, self.progress = whole, small, until, 0.0

    def at(self, progress: float) -> None:
        self.progress = progress

    def __call__(self, images: Tensor) -> Tensor:
        return (self.small if self.progress < self.until else self.whole)(images)

    @property
    def settles_at(self) -> float:
        """Where a step's cost stops changing: the switch, if the run has one."""
        return self.until if self.until < 1 else 0.0


def windowed_views(augment: Callable[[Tensor], Tensor], crop: int, until: float) -> Views:
    """The augmentation, then with crop > 0 a random crop x crop window of each image for the
    first `until` of the schedule; crop 0: whole augmented images throughout."""
    if not crop:
        return Views(augment, augment, until=0.0)
    return Views(augment, lambda images: random_crop(augment(images), crop), until)
