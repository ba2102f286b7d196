"""Balanced pair sampling for the pairwise contrastive loss: half the pairs share a class
(positives), half do not (negatives), and every class takes its turn equally often.

Pairs are index tensors into a batch, so a batch is embedded once and any number of pairs
is read from it: no per-pair forward passes and no Python loop over images."""

from __future__ import annotations

import torch
from torch import Tensor


def balanced_pairs(labels: Tensor, n_pairs: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Sample n_pairs index pairs from labels (N,): (first (P,), second (P,), is_positive (P,)).

    The first ceil(n_pairs / 2) pairs are positive: two different items of one class, the
    classes taken in turn (counts differ by at most one between classes). The rest are
    negative: an item of each class in turn paired with an item of a different class chosen
    uniformly. A class with a single item cannot form positives and is skipped for them; if
    no class has two items every pair is negative, and if there is only one class every pair
    is positive."""
    labels = labels.cpu()
    classes, counts = labels.unique(return_counts=True)  # (K,), (K,)
    order = labels.argsort(stable=True)  # items grouped by class
    starts = torch.cumsum(counts, 0) - counts  # (K,) where each class begins in `order`
    can_pair = (counts >= 2).nonzero().squeeze(1)  # classes that can form positives
    n_positive = (n_pairs + 1) // 2
    if len(classes) < 2:
        n_positive = n_pairs
    elif len(can_pair) == 0:
        n_positive = 0
    n_negative = n_pairs - n_positive

    def uniform(n: int) -> Tensor:
        return torch.rand(n, generator=generator)

    def shuffled_turns(pool: Tensor, n: int) -> Tensor:
        """n class indices from pool, each used floor or ceil of n / len(pool) times."""
        turns = pool.repeat(n // len(pool) + 1)[:n]
        return turns[torch.randperm(n, generator=generator)]

    # positives: a random item of the class and a different random item of the same class
    pos_class = shuffled_turns(can_pair, n_positive) if n_positive else can_pair[:0]
    size = counts[pos_class]
    a = (uniform(n_positive) * size).long()
    b = (a + 1 + (uniform(n_positive) * (size - 1)).long()) % size
    pos_first, pos_second = order[starts[pos_class] + a], order[starts[pos_class] + b]

    # negatives: an item of class c and an item of one of the other K - 1 classes
    k = len(classes)
    neg_class = shuffled_turns(torch.arange(k), n_negative) if n_negative else classes[:0]
    other = (neg_class + 1 + (uniform(n_negative) * (k - 1)).long()) % k
    neg_first = order[starts[neg_class] + (uniform(n_negative) * counts[neg_class]).long()]
    neg_second = order[starts[other] + (uniform(n_negative) * counts[other]).long()]

    first = torch.cat([pos_first, neg_first])
    second = torch.cat([pos_second, neg_second])
    is_positive = torch.cat([torch.ones(n_positive, dtype=torch.bool),
                             torch.zeros(n_negative, dtype=torch.bool)])
    return first, second, is_positive
