"""Mixtures m = (x1 + x2) / 2 of pairs of images: the training pairs of each protocol and
the fixed, seeded test mixtures every separator is scored on."""

from __future__ import annotations

import torch
from torch import Tensor

from latentlab.errors import UserError

TEST_MIXTURES = 10_000  # test mixtures scored for every separator
TEST_MIXTURE_SEED = 0  # fixed, so every model and run is scored on the same mixtures
ASSIGNMENT_IMAGES = 1_000  # the course assignment's protocol: 1,000 training images ...
ASSIGNMENT_PAIRS = 45_000  # ... mixed into 45,000 fixed random pairs


def distinct_pairs(n: int, count: int, seed: int) -> Tensor:
    """(P, 2) int64: P = min(count, n(n-1)/2) seeded random pairs of two different indices
    in range(n), no unordered pair repeated; the order inside each pair is random too."""
    if n < 2:
        raise UserError(f"mixtures need at least 2 images, but the split has {n}; "
                        "raise --train-limit / --test-limit")
    generator = torch.Generator().manual_seed(seed)
    possible = n * (n - 1) // 2
    if count >= possible:  # every pair, shuffled
        pairs = torch.triu_indices(n, n, 1).T
        pairs = pairs[torch.randperm(possible, generator=generator)]
    else:
        pairs = torch.empty(0, 2, dtype=torch.int64)
        while len(pairs) < count:
            first = torch.randint(n, (2 * count,), generator=generator)
            second = (first + torch.randint(1, n, (2 * count,), generator=generator)) % n
            pairs = torch.cat([pairs, torch.stack([first, second], 1)])
            keys = pairs.min(1).values * n + pairs.max(1).values
            _, inverse = torch.unique(keys, return_inverse=True)
            # keep the first occurrence of every unordered pair, in drawing order
            first_seen = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.int64)
            first_seen.scatter_reduce_(0, inverse, torch.arange(len(keys)), "amin")
            pairs = pairs[first_seen.sort().values]
        pairs = pairs[:count]
    flip = torch.rand(len(pairs), generator=generator) < 0.5
    return torch.where(flip[:, None], pairs.flip(1), pairs)


def random_partners(n: int, seed: int) -> Tensor:
    """(n, 2) int64: every index i in range(n) once as first image, with a seeded random
    partner j != i (the full protocol's fresh pairs for one epoch)."""
    if n < 2:
        raise UserError(f"mixtures need at least 2 images, but the split has {n}; "
                        "raise --train-limit")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randperm(n, generator=generator)
    second = (first + torch.randint(1, n, (n,), generator=generator)) % n
    return torch.stack([first, second], 1)


class MixturePairs:
    """Mixtures m = (x1 + x2) / 2 of pairs of images, made batch by batch.

    Holds the (N, C, H, W) uint8 images once and a (P, 2) table of index pairs, so 45,000
    mixtures cost 45,000 x 2 integers, not 45,000 images. With `fresh_each_epoch`,
    `resample(epoch)` draws new partners for every image (seeded by seed and epoch, so an
    interrupted run resumes with the same pairs). `mixture_view()` and `source_view()` index
    like tensors: the loop reads mixtures as images, and test sources as labels. With the
    images' labels, `classes()` gives the two classes of each pair."""

    def __init__(self, images: Tensor, pairs: Tensor | None = None, seed: int = 0,
                 labels: Tensor | None = None) -> None:
        self.images = images
        self.seed = seed
        self.fresh_each_epoch = pairs is None
        # kept on the images' device, so batches are gathered where the images are
        pairs = random_partners(len(images), seed) if pairs is None else pairs
        self.pairs = pairs.to(images.device)
        self.labels = None if labels is None else labels.to(images.device)

    def __len__(self) -> int:
        return len(self.pairs)

    def resample(self, epoch: int) -> None:
        if self.fresh_each_epoch:
            pairs = random_partners(len(self.images), self.seed * 100_003 + epoch)
            self.pairs = pairs.to(self.images.device)

    def to(self, device: torch.device | str) -> MixturePairs:
        """Move the images and the pair table to device in place (the views follow); returns
        self. With both on a GPU, a batch is gathered there: no copy to the host and back,
        which would make every training step wait for the one before."""
        self.images = self.images.to(device)
        self.pairs = self.pairs.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.images.device

    def index(self, index: Tensor | slice) -> Tensor:
        """(B, 2) image indices of the selected pairs, on the images' device."""
        if isinstance(index, Tensor):  # a no-op when the order and the table share a device
            index = index.to(self.pairs.device)
        return self.pairs[index]

    def sources(self, index: Tensor | slice) -> Tensor:
        """(B, 2, C, H, W) uint8: both images of each selected pair."""
        return self.images[self.index(index)]

    def classes(self, index: Tensor | slice) -> Tensor:
        """(B, 2) int64: the class labels of both images of each selected pair."""
        if self.labels is None:
            raise ValueError("these mixtures were made without the images' labels")
        return self.labels[self.index(index)]

    def mixtures(self, index: Tensor | slice) -> Tensor:
        """(B, C, H, W) float in [0, 1]: the exact average of each selected pair."""
        pair = self.sources(index).float()
        return (pair[:, 0] + pair[:, 1]) / 510

    def mixture_view(self) -> PairView:
        return PairView(self, "mixtures")

    def source_view(self) -> PairView:
        return PairView(self, "sources")


class PairView:
    """Tensor-like access to a MixturePairs: view[index] gives mixtures or sources."""

    def __init__(self, pairs: MixturePairs, what: str) -> None:
        self.pairs = pairs
        self.what = what

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        return getattr(self.pairs, self.what)(index)

    def to(self, device: torch.device | str) -> PairView:
        self.pairs.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.pairs.device


def training_mixtures(images: Tensor, protocol: str, seed: int,
                      labels: Tensor | None = None) -> MixturePairs:
    """The training mixtures of a protocol (with the images' labels, when given).

    assignment: a seeded subset of 1,000 training images in 45,000 fixed distinct pairs (all
    images and fewer pairs when the split is smaller); full: every training image each epoch,
    with a fresh random partner."""
    if protocol == "assignment":
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        keep = keep[:ASSIGNMENT_IMAGES].sort().values
        images, labels = images[keep], None if labels is None else labels[keep]
        return MixturePairs(images, distinct_pairs(len(images), ASSIGNMENT_PAIRS, seed), seed,
                            labels)
    if protocol == "full":
        return MixturePairs(images, None, seed, labels)
    raise UserError(f"--protocol must be assignment or full, not {protocol!r}")


def fixed_test_mixtures(images: Tensor, count: int = TEST_MIXTURES,
                  seed: int = TEST_MIXTURE_SEED) -> MixturePairs:
    """The fixed test set: `count` seeded pairs of distinct test images (fewer when the split
    has fewer than count distinct pairs), the same for every model and run."""
    return MixturePairs(images, distinct_pairs(len(images), count, seed), seed)
