"""The `separate` command: split blends of two images with a trained separator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from latentlab.checkpoint import load
from latentlab.data.folders import IMAGE_SUFFIXES, decode_image, visible
from latentlab.errors import UserError
from latentlab.metrics.images import align_to_sources, psnr
from latentlab.plots import plot_image_rows, plot_image_strip, save_image

SHOWN_BLENDS = 12  # blends drawn in the figure of a multi-image `separate`
BATCH = 256  # blends separated at once


def read_image(path: str) -> Tensor:
    """An image file -> (1, C, H, W) uint8 tensor, or UserError saying what is wrong."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read image {path} ({error.strerror})") from None
    return torch.from_numpy(decode_image(data, path).copy()).permute(2, 0, 1)[None]


def image_paths(names: list[str]) -> list[str]:
    """Files as given, folders as the images in them (sorted by name; hidden files, such as
    macOS's ._ copies, left out as in folder datasets)."""
    paths = []
    for name in names:
        folder = Path(name)
        if folder.is_dir():
            found = sorted(str(p) for p in folder.iterdir() if p.is_file() and visible(p.name)
                           and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"folder {name} holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        else:
            paths.append(name)
    return paths


def output_stems(paths: list[str]) -> list[str]:
    """A distinct file-name stem per input: its own, numbered where two share one."""
    stems = [Path(p).stem for p in paths]
    shared = {stem for stem, count in Counter(stems).items() if count > 1}
    names: list[str] = []
    for i, stem in enumerate(stems):
        name = f"{stem}-{i + 1}" if stem in shared else stem
        while name in names or (name != stem and name in stems):  # a blend named a-2.png
            name += "_"
        names.append(name)
    return names


def load_separator(checkpoint: str) -> Any:
    model = load(checkpoint)
    if getattr(model, "kind", "") != "separator":
        kind = getattr(model, "kind", "model")
        raise UserError(f"{checkpoint} holds {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                        f"({type(model).__name__}), not a separator; give the "
                        "separator_model.pth written by `latentlab train separator`")
    return model


def read_images(model: Any, paths: list[str]) -> list[Tensor]:
    """Each image prepared for the model, resized to its training size (saying so)."""
    height, width = model.input_size()
    images, resized = [], []
    for path in tqdm(paths, desc="reading", unit="image", disable=len(paths) < 100):
        image = read_image(path)
        if tuple(image.shape[-2:]) != (height, width):
            resized.append(f"{path} ({image.shape[-1]}x{image.shape[-2]})")
        images.append(model.prepare(image, (height, width)))  # kept small: resized now
    if resized:  # the network only knows the scale of the images it was trained on
        listed = " and ".join(resized) if len(resized) <= 3 else f"{len(resized)} images"
        print(f"note: this separator works at {width}x{height} pixels, the size of its "
              f"training images; {listed} {'was' if len(resized) == 1 else 'were'} resized "
              f"to it, and the outputs are {width}x{height}")
    return images


def separate_files(checkpoint: str, blended: list[str], mix: list[str] | None,
                   out_dir: str) -> None:
    """Separate blended images (files or folders of them), or the mixture of the two images
    in mix, with the separator at checkpoint; write the results under out_dir."""
    model = load_separator(checkpoint)
    out = Path(out_dir)
    paths = mix or image_paths(blended)
    images = read_images(model, paths)
    if mix:
        separate_mix(model, images[0], images[1], out)
    elif len(images) > 1:
        separate_many(model, paths, torch.cat(images), out)
    else:
        separate_one(model, images[0], out)


def separate_one(model: Any, mixture: Tensor, out: Path) -> None:
    x1, x2 = model.separate(mixture)
    for image, name in zip((mixture, x1, x2), ("mixture", "x1_hat", "x2_hat")):
        save_image(image[0], out / f"{name}.png")
    plot_image_strip([mixture, x1, x2], ["mixture", "output 1", "output 2"],
                     out / "separation.png", f"{type(model).__name__} on a blend")
    print(f"wrote {out}/mixture.png, x1_hat.png, x2_hat.png and separation.png")


def separate_mix(model: Any, a: Tensor, b: Tensor, out: Path) -> None:
    """Mix a and b, separate the mixture, and score the outputs against them."""
    mixture = (a + b) / 2
    x1, x2 = model.separate(mixture)
    for image, name in zip((mixture, x1, x2), ("mixture", "x1_hat", "x2_hat")):
        save_image(image[0], out / f"{name}.png")
    x1, x2 = align_to_sources(x1, x2, a, b)
    score = float((psnr(x1, a) + psnr(x2, b)).mean() / 2)
    baseline = float((psnr(mixture, a) + psnr(mixture, b)).mean() / 2)
    print(f"PSNR against the originals: {score:.2f} dB (returning the mixture: "
          f"{baseline:.2f} dB)")
    plot_image_strip([mixture, a, b, x1, x2],
                     ["mixture", "A", "B", "output for A", "output for B"],
                     out / "separation.png",
                     f"{type(model).__name__} on a mix of two images: {score:.2f} dB "
                     f"(returning the mixture: {baseline:.2f} dB)")
    print(f"wrote {out}/mixture.png, x1_hat.png, x2_hat.png and separation.png")


def separate_many(model: Any, paths: list[str], mixtures: Tensor, out: Path) -> None:
    """Several prepared blends (N, C, H, W): <stem>_x1_hat.png and <stem>_x2_hat.png for
    each, and one figure."""
    outputs_1, outputs_2 = [], []
    for start in tqdm(range(0, len(mixtures), BATCH), desc="separating", unit="batch",
                      disable=len(mixtures) <= BATCH):
        first, second = model.separate(mixtures[start:start + BATCH])
        outputs_1.append(first)
        outputs_2.append(second)
    x1, x2 = torch.cat(outputs_1), torch.cat(outputs_2)
    for stem, a, b in zip(output_stems(paths), x1, x2):
        save_image(a, out / f"{stem}_x1_hat.png")
        save_image(b, out / f"{stem}_x2_hat.png")
    shown = min(len(mixtures), SHOWN_BLENDS)
    title = f"{type(model).__name__} on {len(mixtures)} blends"
    if shown < len(mixtures):
        title += f" (the first {shown})"
    plot_image_rows([mixtures[:shown], x1[:shown], x2[:shown]],
                    ["blend", "output 1", "output 2"], out / "separation.png", title)
    print(f"separated {len(mixtures)} blends: wrote <name>_x1_hat.png and <name>_x2_hat.png "
          f"for each, and separation.png, to {out}/")
