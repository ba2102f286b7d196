"""The balanced pair sampler and the pair metrics built on it."""

import pytest
import torch

from latentlab.data.pairs import balanced_pairs
from latentlab.metrics.embeddings import pair_distances, pair_metrics


def uneven_labels():
    # ten classes of very different sizes: 2, 3, ..., 11 items
    return torch.cat([torch.full((c + 2,), c) for c in range(10)])[torch.randperm(65)]


def test_pairs_are_half_positive_and_classes_take_equal_turns():
    labels = uneven_labels()
    first, second, is_positive = balanced_pairs(labels, 1000, torch.Generator().manual_seed(0))
    assert len(first) == len(second) == len(is_positive) == 1000
    assert is_positive.sum() == 500
    pos, neg = is_positive, ~is_positive
    assert (labels[first[pos]] == labels[second[pos]]).all()
    assert (first[pos] != second[pos]).all()
    assert (labels[first[neg]] != labels[second[neg]]).all()
    # exactly balanced: 500 pairs over 10 classes is 50 each, however uneven the classes
    assert torch.bincount(labels[first[pos]], minlength=10).tolist() == [50] * 10
    assert torch.bincount(labels[first[neg]], minlength=10).tolist() == [50] * 10
    # the partner class of a negative is drawn uniformly from the other nine
    partner = torch.bincount(labels[second[neg]], minlength=10)
    assert partner.min() > 25 and partner.max() < 80


def test_odd_counts_differ_by_at_most_one():
    labels = torch.arange(3).repeat(4)
    _, _, is_positive = balanced_pairs(labels, 7)
    first, _, is_positive = balanced_pairs(labels, 7)
    assert is_positive.sum() == 4
    counts = torch.bincount(labels[first[is_positive]], minlength=3)
    assert counts.max() - counts.min() <= 1


def test_degenerate_batches():
    _, _, positive = balanced_pairs(torch.zeros(5, dtype=torch.long), 6)
    assert positive.all()  # one class: no negative exists
    first, second, positive = balanced_pairs(torch.arange(4), 6)
    assert not positive.any() and (first != second).all()  # singletons: no positive exists


def test_pair_metrics_exact():
    metrics = pair_metrics(torch.tensor([0.1, 0.3]), torch.tensor([0.5, 0.9, 1.0]))
    assert metrics["positive_pair_mean_distance"] == pytest.approx(0.2)
    assert metrics["negative_pair_mean_distance"] == pytest.approx(0.8)
    assert metrics["pair_auc"] == 1.0
    assert pair_metrics(torch.tensor([1.0]), torch.tensor([0.0]))["pair_auc"] == 0.0
    # of the 2 x 3 (positive, negative) comparisons, 0.1 is closer than all three; 0.6 is
    # closer than 0.9, ties 0.6 (half) and loses to 0.5: (3 + 1 + 0.5) / 6
    auc = pair_metrics(torch.tensor([0.1, 0.6]), torch.tensor([0.5, 0.6, 0.9]))["pair_auc"]
    assert auc == pytest.approx(0.75)


def test_pair_distances_of_collapsed_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings = torch.eye(3)[labels]  # each class on its own unit vector
    positive, negative = pair_distances(embeddings, labels, n_pairs=20)
    assert (positive == 0).all()
    assert torch.allclose(negative, torch.full_like(negative, 2 ** 0.5))
