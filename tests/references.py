"""Scores written out independently of latentlab.metrics, for tests to check its numbers
against: what the metric means, not how the code computes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                        test_labels: torch.Tensor, k: int = 20) -> float:
    """Each test embedding's k most cosine-similar training embeddings vote for their labels;
    a tied vote goes to the smallest label (as scikit-learn's). The share voted right."""
    similarity = F.normalize(test.double(), dim=1) @ F.normalize(train.double(), dim=1).T
    nearest = similarity.topk(min(k, len(train)), dim=1).indices
    votes = F.one_hot(train_labels[nearest], int(train_labels.max()) + 1).sum(1)
    return float((votes.argmax(1) == test_labels).double().mean())  # argmax: first maximum
