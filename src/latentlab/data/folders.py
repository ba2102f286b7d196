"""Image folders and zips laid out as <split>/<class>/<image> or <class>/<image>."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from latentlab.data.image_data import ImageData, holdout_mask
from latentlab.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "valid": "test",
               "validation": "test"}


def folder_entries(path: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """Relative file names under a directory or inside a zip, and a reader for each."""
    if not path.exists():
        raise UserError(f"folder dataset {path} does not exist; give a directory or a .zip "
                        "laid out as <split>/<class>/<image> or <class>/<image>")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is neither a directory nor a zip archive")
        archive = zipfile.ZipFile(path)
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        return names, archive.read
    names = [str(p.relative_to(path)) for p in sorted(path.rglob("*")) if p.is_file()]
    return names, lambda name: (path / name).read_bytes()


def visible(name: str) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """(H, W, C) uint8 with C = 1 or 3."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image: Image.Image = opened
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "LA", "I", "I;16", "F")
                                      else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UserError(f"{name} is not a readable image ({error}); remove it or replace it"
                        ) from None
    return array[:, :, None] if array.ndim == 2 else array


def load_folder(path: Path, seed: int = 0) -> ImageData:
    """Images laid out as <split>/<class>/<image>, or <class>/<image> split by a seeded hold-out."""
    names, read = folder_entries(path)
    names = sorted(n for n in names if visible(n))
    if not names:
        raise UserError(f"no images found in {path}; expected <split>/<class>/<image> "
                        "or <class>/<image> files")
    parts = [Path(n).parts for n in names]
    # Strip wrapping folders such as cifar10/ in cifar10/train/cat/0001.jpg.
    while (all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1
           and parts[0][0].lower() not in SPLIT_NAMES):
        parts = [p[1:] for p in parts]
    depths = {len(p) for p in parts}
    if depths == {3} and all(p[0].lower() in SPLIT_NAMES for p in parts):
        splits = [SPLIT_NAMES[p[0].lower()] for p in parts]
        classes = [p[1] for p in parts]
    elif depths == {2}:
        splits, classes = [], [p[0] for p in parts]
    else:
        odd = next(n for n, p in zip(names, parts) if len(p) not in (2, 3) or (
            len(p) == 3 and p[0].lower() not in SPLIT_NAMES))
        raise UserError(f"{path}: cannot tell the classes apart at {odd}; lay images out as "
                        "<split>/<class>/<image> (splits: train, test) or <class>/<image>")
    for name in names:
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{path}: {name} is not an image file; remove it from the folder")
    class_names = sorted(set(classes))
    arrays = [decode_image(read(n), f"{path}: {n}")
              for n in tqdm(names, desc=f"decoding {path.name}", unit="img", leave=False,
                            disable=None)]
    sizes = {a.shape[:2]: n for a, n in zip(arrays, names)}
    if len(sizes) > 1:
        (s1, n1), (s2, n2) = list(sizes.items())[:2]
        raise UserError(f"{path}: images have different sizes, e.g. {s1[1]}x{s1[0]} ({n1}) and "
                        f"{s2[1]}x{s2[0]} ({n2}); resize them to one size first")
    channels = max(a.shape[2] for a in arrays)
    images = torch.from_numpy(np.stack([np.broadcast_to(a, (*a.shape[:2], channels))
                                        for a in arrays])).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([class_names.index(c) for c in classes])
    if splits:
        is_train = torch.tensor([s == "train" for s in splits])
        if is_train.all() or not is_train.any():
            raise UserError(f"{path}: needs both a train/ and a test/ folder "
                            "(or no split folders at all)")
    else:
        is_train = holdout_mask(labels, seed)
    return ImageData(f"folder:{path}", images[is_train], labels[is_train], images[~is_train],
                     labels[~is_train], class_names, str(path),
                     [n for n, t in zip(names, is_train.tolist()) if t],
                     [n for n, t in zip(names, is_train.tolist()) if not t])


def read_names(path: str | Path) -> set[str]:
    """The image names listed in a text file: any number per line, '#' starts a comment."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--exclude {path} does not exist; give a text file of image names "
                        "(paths inside the folder or zip, one or more per line)")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read --exclude {path} ({error})") from None
    names = {name for line in text.splitlines() for name in line.split("#")[0].split()}
    if not names:  # an empty list would silently exclude nothing
        raise UserError(f"--exclude {path} lists no image names; give a text file of paths "
                        "inside the folder or zip, one or more per line")
    return names


def name_ends(name: str) -> list[str]:
    """A member name and its ends at folder boundaries (of two parts or more):
    a/b/c.png -> a/b/c.png, b/c.png. A listed name matches a member with that end, so lists
    may leave out wrapping folders."""
    parts = Path(name).parts
    return ["/".join(parts[i:]) for i in range(max(1, len(parts) - 1))]


def matching(names: list[str], listed: set[str] | dict[str, str]) -> torch.Tensor:
    """(N,) bool: which of names a listed name matches (see name_ends)."""
    return torch.tensor([any(end in listed for end in name_ends(n)) for n in names],
                        dtype=torch.bool)
