"""ImageModel, the base of every network, and the one registry of models.

Every model maps images in [0, 1] to an embedding with `embed()`, kept separate from heads
and decoders (as timm separates features from heads), and carries `hparams()` so a
checkpoint can rebuild it. `@register("name")` makes a model loadable by its class name (how
checkpoints name it) and choosable by `name` among the models of its family (--encoder,
--model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlab.errors import UserError

# class name -> class: the one registry; family() reads each family's choices from it
MODELS: dict[str, type[ImageModel]] = {}
M = TypeVar("M", bound="type[ImageModel]")
T = TypeVar("T", bound="ImageModel")

CONV_SIZE = 32  # convolutional models work at 32x32; other sizes are resized on the way in


def register(cli_name: str) -> Callable[[M], M]:
    """Class decorator: register a model under its class name, choosable as `cli_name`."""

    def add(cls: M) -> M:
        cls.cli_name = cli_name
        MODELS[cls.__name__] = cls
        return cls

    return add


def family(base: type[T]) -> dict[str, type[T]]:
    """The registered subclasses of base by command-line name, in registration order."""
    members: dict[str, type[T]] = {}
    for cls in MODELS.values():
        if issubclass(cls, base):
            assert cls.cli_name not in members, f"two {base.__name__}s named {cls.cli_name}"
            members[cls.cli_name] = cls
    return members


def resolve_encoder(encoder: str, image_shape: tuple[int, int, int], colour: str = "conv") -> str:
    """'auto' picks `colour` (the family's choice) for colour images and mlp for grey ones."""
    if encoder == "auto":
        return colour if image_shape[0] == 3 else "mlp"
    return encoder


def resolve_family(families: dict[str, Any], encoder: str, image_shape: tuple[int, int, int],
                   what: str, colour: str = "conv") -> str:
    """--encoder resolved for the image, checked against the families `what` offers."""
    name = resolve_encoder(encoder, image_shape, colour)
    if name not in families:
        raise UserError(f"--encoder {name} is not available for {what}; "
                        f"choose {', '.join(families)} or auto")
    return name


class ImageModel(nn.Module):
    """Base class: remembers the image shape it was built for and converts inputs to it."""

    kind = "model"
    cli_name = ""  # the name --encoder or --model chooses it by; set by @register

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

