"""Which images train, validate and test a run.

Training images can be kept out by name (`--exclude FILE`), joined by the training images of
a second dataset (`--extra-train SPEC`, e.g. the CIFAR-10 JPEG copy beside official pixels),
and a seeded validation split is held out of them: everything a run chooses (best weights,
the end of a time budget) is chosen on it, and the test split is scored once, at the end.

Twins are one image stored twice, e.g. an official CIFAR-10 image and its JPEG re-encoding.
A twins file beside a dataset (`<name>-jpeg-twins.txt` beside `<name>.zip`) lists one pair of
names per line; an extra training image whose twin is a validation or test image is left
out, so an image scores a model only if neither it nor its twin was seen in training.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from latentlab.config import Config, min_batch_size
from latentlab.data import ImageData, decode_image, folder_entries, load_dataset, visible
from latentlab.errors import UserError

LARGE_TRAINING_SET = 40_000  # from this many training images on, ...
LARGE_VALIDATION = 5_000  # ... this many are held out for validation,
VALIDATION_FRACTION = 0.1  # else this share of them


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
    return {name for line in text.splitlines() for name in line.split("#")[0].split()}


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


def folder_path(spec: str) -> Path | None:
    return Path(spec.removeprefix("folder:")).expanduser() if spec.startswith("folder:") else None


def twins_file(spec: str) -> Path | None:
    """The twins file beside a folder dataset: <name>-jpeg-twins.txt beside <name>[.zip]."""
    path = folder_path(spec)
    if path is None:
        return None
    candidate = path.parent / f"{path.name.removesuffix('.zip')}-jpeg-twins.txt"
    return candidate if candidate.is_file() else None


def read_twins(path: Path) -> dict[str, str]:
    """Both directions of every pair of names in a twins file."""
    twins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        names = line.split()
        if not names:
            continue
        if len(names) != 2:
            raise UserError(f"{path}, line {number}: expected two names, found {len(names)}")
        twins[names[0]], twins[names[1]] = names[1], names[0]
    return twins


def twin_of(name: str, twins: dict[str, str]) -> str | None:
    """The twin a twins file names for this member name (matched by its ends), or None."""
    end = next((e for e in name_ends(name) if e in twins), None)
    return None if end is None else twins[end]


def twins_of(names: list[str], twins: dict[str, str]) -> list[str]:
    """The twin of each name that has one."""
    return [twin for twin in (twin_of(n, twins) for n in names) if twin is not None]


def validation_size(n_train: int, requested: int | None) -> int:
    if requested is not None:
        if requested >= n_train:
            raise UserError(f"--validation {requested} leaves no training images "
                            f"(there are {n_train:,}); give a smaller number")
        return requested
    if n_train >= LARGE_TRAINING_SET:
        return LARGE_VALIDATION
    return min(max(2, round(VALIDATION_FRACTION * n_train)), n_train - 1)


def hold_out_validation(data: ImageData, size: int, seed: int) -> ImageData:
    """Move a seeded random `size` of the training images into the validation split, in that
    random order: a folder is read class by class, and validation batches of one class would
    make every batch-wise loss (SupCon's, the margin loss) measure nothing."""
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))
    val, is_val = order[:size], torch.zeros(len(order), dtype=torch.bool)
    is_val[val] = True
    names = data.train_names
    return replace(data.select_train(~is_val), val_images=data.train_images[val],
                   val_labels=data.train_labels[val],
                   val_names=[names[i] for i in val.tolist()] if names else [])


def without_listed(data: ImageData, listed: set[str], what: str) -> ImageData:
    """data without the training images whose names are listed."""
    if not data.train_names:
        raise UserError(f"{what} names images, but {data.name} is not a folder dataset; "
                        "exclusion lists work with folder:PATH datasets")
    drop = matching(data.train_names, listed)
    return data.select_train(~drop)


def training_data(config: Config) -> ImageData:
    """The dataset of a run: --exclude applied, the validation split held out, and
    --extra-train images (less the twins of validation and test images) added."""
    data = load_dataset(config.dataset, config.data_dir, seed=config.seed)
    data = data.limit(config.train_limit, config.test_limit, seed=config.seed)
    listed = read_names(config.exclude) if config.exclude else set()
    if listed:
        before = len(data.train_labels)
        data = without_listed(data, listed, f"--exclude {config.exclude}")
        print(f"--exclude: {before - len(data.train_labels):,} training images left out")
    data = hold_out_validation(data, validation_size(len(data.train_labels), config.validation),
                               config.seed)
    if config.oversample > 1:
        repeat = torch.arange(len(data.train_labels)).repeat(config.oversample)
        data = replace(data, train_images=data.train_images[repeat],
                       train_labels=data.train_labels[repeat],
                       train_names=[data.train_names[i] for i in repeat] if data.train_names
                       else [])
    if config.extra_train:
        data = add_extra_training(data, config, listed)
    check_sizes(data, config)
    return data


def images_needed(to_train: int, validation: int | None) -> int:
    """The fewest training images that leave to_train of them after the validation split."""
    if validation is not None:
        return to_train + validation
    n = to_train + 1
    while n - validation_size(n, None) < to_train:
        n += 1
    return n


def check_sizes(data: ImageData, config: Config) -> None:
    """Refuse a run its splits cannot carry: a test split, a batch of the experiment's
    smallest size, a validation image to choose on, and two classes for the losses that
    learn from classes."""
    assert data.val_labels is not None
    n_train, n_val = len(data.train_labels), len(data.val_labels)
    if len(data.test_labels) == 0:
        raise UserError(f"{config.dataset} has no test images (a folder of <class>/<image> "
                        "files holds out a fifth of each class, rounded: none of a class of "
                        "fewer than 3); add images, or lay them out as train/ and test/ folders")
    smallest = min_batch_size(config.experiment)
    if config.experiment == "separator" and config.protocol == "assignment":
        smallest = max(smallest, 3)  # its batches are of pairs: 3 images make 3 pairs
    if n_train < smallest or n_val < 1:
        limit = f" with --train-limit {config.train_limit}" if config.train_limit else ""
        raise UserError(f"{config.dataset}{limit} leaves {n_train:,} training and {n_val:,} "
                        f"validation images; {config.experiment} needs {smallest} or more to "
                        f"train on and 1 or more to validate on: give "
                        f"{images_needed(smallest, config.validation)} or more training images")
    if config.experiment in ("contrastive", "supcon") and len(data.train_labels.unique()) < 2:
        raise UserError(f"{config.experiment} learns from images of different classes, but the "
                        f"training images of {config.dataset} are all of one class; give two or "
                        "more classes, or train simclr or autoencoder, which use no labels")


def add_extra_training(data: ImageData, config: Config, listed: set[str]) -> ImageData:
    """data with the training images of --extra-train appended, less the listed ones and the
    twins of data's validation and test images."""
    assert config.extra_train is not None
    extra = load_dataset(config.extra_train, config.data_dir, seed=config.seed)
    if extra.image_shape != data.image_shape or extra.class_names != data.class_names:
        raise UserError(f"--extra-train {config.extra_train} holds {extra.image_shape} images of "
                        f"classes {extra.class_names}, but {config.dataset} holds "
                        f"{data.image_shape} images of {data.class_names}; they must match")
    twins: dict[str, str] = {}
    for spec in (config.dataset, config.extra_train):
        path = twins_file(spec)
        if path is not None:
            twins.update(read_twins(path))
    keep_out = set(listed) | set(twins_of(data.val_names + data.test_names, twins))
    kept = extra
    if keep_out:
        kept = without_listed(extra, keep_out, "the twins of validation and test images")
    print(f"--extra-train: {len(kept.train_labels):,} training images of {extra.name} "
          f"({len(extra.train_labels) - len(kept.train_labels):,} left out: listed, or twins of "
          "validation or test images)")
    return replace(data, train_images=torch.cat([data.train_images, kept.train_images]),
                   train_labels=torch.cat([data.train_labels, kept.train_labels]),
                   train_names=data.train_names + kept.train_names)


def read_twin_images(dataset: str, names: list[str]) -> Tensor | None:
    """(N, C, H, W) uint8: the JPEG twin of every named image, read from the folder or zip
    beside the dataset that holds them; None without a twins file or such a folder."""
    twins_path, path = twins_file(dataset), folder_path(dataset)
    if twins_path is None or path is None or not names:
        return None
    twins = read_twins(twins_path)
    wanted = []
    for name in names:
        twin = twin_of(name, twins)
        if twin is None:
            raise UserError(f"{twins_path} names no twin for {name}; every test image needs one")
        wanted.append(twin)
    for candidate in sorted(path.parent.iterdir()):
        if candidate == path or not (candidate.is_dir() or candidate.suffix == ".zip"):
            continue
        members, read = folder_entries(candidate)
        by_end = {end: m for m in members if visible(m) for end in name_ends(m)}
        if all(w in by_end for w in wanted):
            arrays = [decode_image(read(by_end[w]), f"{candidate}: {w}") for w in wanted]
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    raise UserError(f"{twins_path} names JPEG twins such as {wanted[0]}, but no folder or zip "
                    f"beside {path} holds them all; put the archive of the twins beside it")
