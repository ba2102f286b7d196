"""Which images train, validate and test a run.

Training images can be kept out by name (`--exclude FILE`), joined by the training images of
a second dataset (`--extra-train SPEC`, e.g. the CIFAR-10 JPEG copy beside official pixels),
and a seeded validation split is held out of them: everything a run chooses (best weights,
the end of a time budget) is chosen on it, and the test split is scored once, at the end.

An extra training image whose twin (data/twins.py) is a validation or test image is left
out, so an image scores a model only if neither it nor its twin was seen in training.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from latentlab.config import Config, min_batch_size
from latentlab.data.datasets import load_dataset
from latentlab.data.folders import matching, read_names
from latentlab.data.image_data import ImageData
from latentlab.data.twins import twins_beside, twins_of
from latentlab.errors import UserError

LARGE_TRAINING_SET = 40_000  # from this many training images on, ...
LARGE_VALIDATION = 5_000  # ... this many are held out for validation,
VALIDATION_FRACTION = 0.1  # else this share of them


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
    # the test split follows its own seed: --seed varies training, not the test images
    data = load_dataset(config.dataset, config.data_dir, seed=config.test_seed)
    data = data.limit(config.train_limit, config.test_limit, seed=config.seed,
                      test_seed=config.test_seed)
    listed = read_names(config.exclude) if config.exclude else set()
    if listed:
        before = len(data.train_labels)
        data = without_listed(data, listed, f"--exclude {config.exclude}")
        print(f"--exclude: {before - len(data.train_labels):,} training images left out")
        if before == len(data.train_labels) and not config.extra_train:
            raise UserError(f"--exclude {config.exclude} names {len(listed):,} images but none "
                            f"of {config.dataset}'s training images; give names as paths "
                            "inside the folder or zip (or their ends)")
    data = hold_out_validation(data, validation_size(len(data.train_labels), config.validation),
                               config.seed)
    if config.oversample > 1:  # repeated by index: data.epoch_images()
        data = replace(data, train_repeats=torch.full_like(data.train_labels, config.oversample))
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
    extra = load_dataset(config.extra_train, config.data_dir, seed=config.test_seed)
    if extra.image_shape != data.image_shape or extra.class_names != data.class_names:
        raise UserError(f"--extra-train {config.extra_train} holds {extra.image_shape} images of "
                        f"classes {extra.class_names}, but {config.dataset} holds "
                        f"{data.image_shape} images of {data.class_names}; they must match")
    twins = twins_beside([config.dataset, config.extra_train])
    if not twins:
        print(f"--extra-train: no twins file beside {config.dataset} or {config.extra_train}, "
              "so no image is left out as the twin of a validation or test image")
    keep_out = set(listed) | set(twins_of(data.val_names + data.test_names, twins))
    kept = extra
    if keep_out:
        kept = without_listed(extra, keep_out, "the twins of validation and test images")
    print(f"--extra-train: {len(kept.train_labels):,} training images of {extra.name} "
          f"({len(extra.train_labels) - len(kept.train_labels):,} left out: listed, or twins of "
          "validation or test images)")
    # a twin of one of the dataset's own training images trains too, but a kNN bank
    # holds each image once
    copies = matching(kept.train_names, set(twins_of(data.train_names, twins)))
    bank = torch.cat([torch.ones_like(data.train_labels, dtype=torch.bool), ~copies])
    repeats = None if data.train_repeats is None else torch.cat(
        [data.train_repeats, torch.ones_like(kept.train_labels)])
    return replace(data, train_images=torch.cat([data.train_images, kept.train_images]),
                   train_labels=torch.cat([data.train_labels, kept.train_labels]),
                   train_names=data.train_names + kept.train_names, train_repeats=repeats,
                   bank_mask=bank)
