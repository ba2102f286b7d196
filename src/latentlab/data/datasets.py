"""Datasets by name: official releases, scikit-learn's digits, image folders.

Every loader returns an `ImageData` whose images are (N, C, H, W) uint8 tensors, so training
never touches Python per image. Decoded datasets are cached as one tensor file each, so the
second run starts in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from latentlab.data.folders import load_folder
from latentlab.data.image_data import ImageData, holdout_mask
from latentlab.data.official import (
    DATASET_NAMES,
    OFFICIAL,
    cache_dir,
    download,
    find_official,
    search_roots,
)
from latentlab.errors import UserError
from latentlab.files import save_atomic

# Bump when the decoded layout changes, so stale caches are ignored.
CACHE_FORMAT = 2


def load_digits_data() -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16, scaled to 0..255)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    is_train = holdout_mask(labels, seed=0)
    return ImageData("digits", images[is_train], labels[is_train], images[~is_train],
                     labels[~is_train], [str(i) for i in range(10)], "scikit-learn")


# ----------------------------------------------------------------------------- entry point

def fingerprint(paths: list[Path]) -> str:
    """Changes when any file under paths changes size or modification time."""
    digest = hashlib.sha256(str(CACHE_FORMAT).encode())
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            stat = f.stat()
            digest.update(f"{f.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached(key: str, build: Callable[[], ImageData]) -> ImageData:
    """Load a decoded dataset from the cache, or build it and store it atomically."""
    path = cache_dir() / "decoded" / f"{key}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            return ImageData(**saved)
        except Exception:  # a damaged cache entry is rebuilt, never fatal
            path.unlink(missing_ok=True)
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(vars(data), path)
    except OSError:
        pass  # a read-only cache only costs speed
    return data


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0,
                 download_missing: bool = True) -> ImageData:
    """Load a dataset by name: cifar10, fashion-mnist, mnist, digits or folder:PATH."""
    if name == "digits":
        return load_digits_data()
    if name.startswith("folder:"):
        path = Path(name.removeprefix("folder:")).expanduser()
        if not path.exists():
            load_folder(path)  # raises the explanatory error
        key = f"folder-{path.name}-{fingerprint([path])}-{seed}"
        return cached(key, lambda: load_folder(path, seed))
    spec = OFFICIAL.get(name)
    if spec is None:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    files = find_official(spec, data_dir)
    if files is None:
        if not download_missing:
            raise UserError(f"{spec.title} not found")
        files = download(spec)
    key = f"{spec.name}-{fingerprint(list(files.values()))}"

    def build() -> ImageData:
        train_x, train_y, test_x, test_y = spec.read(files)
        return ImageData(spec.name, train_x, train_y, test_x, test_y, spec.class_names,
                         str(next(iter(files.values())).parent))
    return cached(key, build)


def describe_datasets(data_dir: str | Path | None = None) -> Iterator[tuple[str, str]]:
    """(name, where it was found or why not) for every dataset name, without downloading."""
    for spec in OFFICIAL.values():
        files = find_official(spec, data_dir)
        if files:
            yield spec.name, f"found in {next(iter(files.values())).parent}"
        else:
            searched = ", ".join(str(r) for r in search_roots(data_dir))
            yield spec.name, (f"not found (searched {searched}); downloaded on first use, "
                              f"or put {', '.join(f for f, _ in spec.files)} in one of those")
    yield "digits", "built in (scikit-learn's 8x8 digits, 1,797 images)"
    yield "folder:PATH", "your own images: a directory or .zip of <split>/<class>/<image>"
