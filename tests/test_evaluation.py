import math

import pytest
import torch

from latentlab.metrics.embeddings import (
    class_distances,
    embedding_metrics,
    knn_accuracy,
    linear_probe_accuracy,
    one_per_class,
)
from latentlab.metrics.images import class_pair_means, psnr, reconstruction_metrics


def clusters(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes on three orthogonal axes, with small noise: a known answer."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    points = torch.eye(3)[labels] * 5 + 0.1 * torch.randn(len(labels), 3, generator=generator)
    return points, labels


def test_knn_and_probe_are_perfect_on_separated_clusters() -> None:
    train, train_labels = clusters(30, 0)
    test, test_labels = clusters(10, 1)
    assert knn_accuracy(train, train_labels, test, test_labels) == 1.0
    assert linear_probe_accuracy(train, train_labels, test, test_labels) == 1.0


def test_knn_counts_wrong_labels() -> None:
    train, train_labels = clusters(30, 0)
    test, test_labels = clusters(10, 1)
    test_labels[:5] = 2  # five class-0 points now carry a wrong label
    assert knn_accuracy(train, train_labels, test, test_labels) == pytest.approx(25 / 30)


def test_knn_uses_cosine_distance() -> None:
    # (1, 0) points the way of (10, 0) [class 0] but lies nearer (1, 1) [class 1]: by angle
    # 0 against 45 degrees, by Euclidean distance 9 against 1. Only the cosine vote says 0.
    train = torch.tensor([[10.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    queries = torch.tensor([[1.0, 0.0], [0.2, 0.0], [100.0, 0.0]])  # its length plays no part
    assert knn_accuracy(train, labels, queries, torch.tensor([0, 0, 0]), k=1) == 1.0
    # (1, 0.1) lies along (1, 0) [class 0]; the dot product would pick long (10, 10) [class 1]
    train = torch.tensor([[1.0, 0.0], [10.0, 10.0]])
    assert knn_accuracy(train, labels, torch.tensor([[1.0, 0.1]]), torch.tensor([0]), k=1) == 1.0


def test_class_distances_on_a_known_layout() -> None:
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    within, between = class_distances(points, labels)
    assert within.tolist() == [5.0]
    assert sorted(between.tolist()) == pytest.approx([1.0, math.sqrt(9 + 9)])


def test_embedding_metrics_on_clusters() -> None:
    train, train_labels = clusters(30, 0)
    test, test_labels = clusters(10, 1)
    metrics = embedding_metrics(train, train_labels, test, test_labels)
    assert metrics["silhouette"] > 0.9
    assert metrics["mean_between_class_distance"] == pytest.approx(5 * math.sqrt(2), rel=0.05)
    assert metrics["mean_within_class_distance"] < 0.5


def test_psnr_known_value() -> None:
    target = torch.zeros(2, 1, 4, 4)
    estimate = torch.full((2, 1, 4, 4), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(estimate, target).tolist() == pytest.approx([20.0, 20.0])
    metrics = reconstruction_metrics(estimate, target)
    assert metrics["reconstruction_mse"] == pytest.approx(0.01)
    assert metrics["reconstruction_psnr"] == pytest.approx(20.0)


def test_one_per_class_shows_every_class_of_a_sorted_test_set() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    assert one_per_class(labels, 5).tolist() == [0, 3, 5, 1, 4]
    assert sorted(one_per_class(labels, 100).tolist()) == list(range(8))


def test_class_pair_means_pool_both_orders_and_count_each_pair_once() -> None:
    values = torch.tensor([10.0, 20.0, 30.0, 40.0])
    classes = torch.tensor([[0, 1], [1, 0], [2, 2], [0, 2]])
    means, counts = class_pair_means(values, classes, 3)
    assert torch.equal(means.nan_to_num(-1), means.T.nan_to_num(-1))  # symmetric
    assert means[0, 1] == means[1, 0] == 15 and means[2, 2] == 30 and means[0, 2] == 40
    assert means[1, 1].isnan() and means[1, 2].isnan()  # no mixture of those classes
    assert counts.tolist() == [[0, 2, 1], [2, 0, 0], [1, 0, 1]]
    assert int(counts.tril().sum()) == len(values)

