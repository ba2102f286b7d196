"""ImageData: a labelled dataset held in memory as uint8 tensors, and the seeded
class-stratified hold-out that splits a dataset without split folders."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import torch
from torch import Tensor


@dataclass
class ImageData:
    """A labelled dataset held in memory."""

    name: str
    train_images: Tensor  # (N, C, H, W) uint8
    train_labels: Tensor  # (N,) int64
    test_images: Tensor  # (M, C, H, W) uint8
    test_labels: Tensor  # (M,) int64
    class_names: list[str]
    source: str  # where the files were found
    # member names of folder datasets (empty for the others), for exclusion lists and twins
    train_names: list[str] = field(default_factory=list)
    test_names: list[str] = field(default_factory=list)
    # the seeded validation split held out of the training images (splits.hold_out_validation)
    val_images: Tensor | None = None
    val_labels: Tensor | None = None
    val_names: list[str] = field(default_factory=list)
    # how many times each training image is seen per epoch (--oversample); None: once each.
    # train_images holds every image once, so a kNN bank never counts one image twice
    train_repeats: Tensor | None = None
    # (N,) bool: the training images a kNN bank holds, one copy of each image (an
    # --extra-train image whose twin is one of the dataset's own training images is not)
    bank_mask: Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    def limit(self, train: int | None, test: int | None, seed: int = 0,
              test_seed: int | None = None) -> ImageData:
        """A seeded random subset (for quick runs); None keeps a split whole. Each split is
        drawn on its own (the test split with test_seed, default seed), so the test subset
        does not depend on the training limit."""

        def pick(images: Tensor, labels: Tensor, names: list[str],
                 n: int | None, seed: int) -> tuple[Tensor, Tensor, list[str]]:
            if n is None or n >= len(labels):
                return images, labels, names
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(labels), generator=generator)[:n].sort().values
            return images[keep], labels[keep], [names[i] for i in keep] if names else []

        train_images, train_labels, train_names = pick(self.train_images, self.train_labels,
                                                       self.train_names, train, seed)
        test_images, test_labels, test_names = pick(self.test_images, self.test_labels,
                                                    self.test_names, test,
                                                    seed if test_seed is None else test_seed)
        return replace(self, train_images=train_images, train_labels=train_labels,
                       train_names=train_names, test_images=test_images,
                       test_labels=test_labels, test_names=test_names)

    def select_train(self, keep: Tensor) -> ImageData:
        """The same data with only the training images where keep (N,) bool is True."""
        names = [n for n, k in zip(self.train_names, keep.tolist()) if k]
        repeats = None if self.train_repeats is None else self.train_repeats[keep]
        bank = None if self.bank_mask is None else self.bank_mask[keep]
        return replace(self, train_images=self.train_images[keep],
                       train_labels=self.train_labels[keep], train_names=names,
                       train_repeats=repeats, bank_mask=bank)

    def bank(self) -> tuple[Tensor, Tensor]:
        """The training images and labels a kNN bank or linear probe is fitted on: each
        image once, however often it trains."""
        if self.bank_mask is None:
            return self.train_images, self.train_labels
        return self.train_images[self.bank_mask], self.train_labels[self.bank_mask]

    def epoch_images(self) -> tuple[Tensor, Tensor]:
        """The images and labels an epoch trains on: each training image as often as
        train_repeats says, by index, without copying an image."""
        if self.train_repeats is None:
            return self.train_images, self.train_labels
        index = torch.arange(len(self.train_labels)).repeat_interleave(self.train_repeats)
        return cast(Tensor, IndexedImages(self.train_images, index)), self.train_labels[index]


class IndexedImages:
    """Tensor-like images[index[i]]: the images an index names, repeats included, read
    batch by batch from one copy of each image."""

    def __init__(self, images: Tensor, index: Tensor) -> None:
        self.images, self.index = images, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: Tensor | slice | int) -> Tensor:
        if isinstance(i, Tensor):
            i = i.to(self.index.device)
        return self.images[self.index[i]]

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self.index), *self.images.shape[1:]])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> IndexedImages:
        return IndexedImages(self.images.to(device), self.index.to(device))


def holdout_mask(labels: Tensor, seed: int, test_fraction: float = 0.2) -> Tensor:
    """True for training items: a seeded, class-stratified hold-out of test_fraction."""
    generator = torch.Generator().manual_seed(seed)
    is_train = torch.ones(len(labels), dtype=torch.bool)
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        is_train[members[: round(len(members) * test_fraction)]] = False
    return is_train
