"""How well embeddings separate classes: kNN, linear probe, silhouette, distances of
same-class and other-class pairs, t-SNE maps. Distances are Euclidean on the embeddings as
`embed()` returns them (models whose loss works on the unit sphere return L2-normalised
embeddings)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from torch import Tensor


@torch.no_grad()
def embed_all(model: Any, images: Tensor, batch_size: int = 500) -> Tensor:
    """(N, C, H, W) uint8 images -> (N, D) float embeddings on the CPU."""
    model.eval()
    return torch.cat([model.embed(images[i: i + batch_size]).float().cpu()
                      for i in range(0, len(images), batch_size)])


def knn_accuracy(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                 k: int = 20) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine distance) with train as the bank.

    train: (N, D), test: (M, D); labels (N,) and (M,)."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric="cosine", algorithm="brute")
    knn.fit(train.numpy(), train_labels.numpy())
    return float((knn.predict(test.numpy()) == test_labels.numpy()).mean())


def linear_probe_accuracy(train: Tensor, train_labels: Tensor, test: Tensor,
                          test_labels: Tensor, max_iter: int = 500) -> float:
    """Test accuracy of multinomial logistic regression on standardised frozen embeddings;
    nan when the training labels hold fewer than two classes (there is nothing to tell apart)."""
    if len(train_labels.unique()) < 2:
        return float("nan")
    scaler = StandardScaler().fit(train.numpy())
    probe = LogisticRegression(max_iter=max_iter, C=1.0)
    probe.fit(scaler.transform(train.numpy()), train_labels.numpy())
    return float(probe.score(scaler.transform(test.numpy()), test_labels.numpy()))


def class_distances(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All pairwise Euclidean distances, split into same-class and different-class pairs.

    embeddings: (N, D) -> (within (P,), between (Q,)), each unordered pair counted once."""
    distances = torch.cdist(embeddings.double(), embeddings.double())
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)
    return distances[same & upper].float(), distances[~same & upper].float()


def subsample(n: int, limit: int, seed: int = 0) -> Tensor:
    """Indices of a seeded random subset of at most limit of range(n)."""
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]


def one_per_class(labels: Tensor, n: int) -> Tensor:
    """Indices of up to n examples: the first of each class in turn, so figures show every
    class even when a test set is sorted by class. labels (N,) -> (min(n, N),)."""
    order = torch.argsort(labels, stable=True)
    rank_in_class = torch.empty_like(order)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class[order] = torch.arange(len(labels)) - starts[labels[order]]
    # sort by (rank within class, class): 1st of every class, then 2nd of every class, ...
    key = rank_in_class * (int(labels.max()) + 1 if len(labels) else 1) + labels
    return torch.argsort(key, stable=True)[:n]


def embedding_metrics(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                      distance_sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The shared embedding report: kNN, linear probe, silhouette, class distances."""
    pick = subsample(len(test), distance_sample, seed)
    within, between = class_distances(test[pick], test_labels[pick])
    n_labels = len(test_labels[pick].unique())
    silhouette = (float(silhouette_score(test[pick].numpy(), test_labels[pick].numpy()))
                  if 1 < n_labels < len(pick) else float("nan"))
    within_mean, between_mean = float(within.mean()), float(between.mean())
    return {
        "knn_accuracy": knn_accuracy(train, train_labels, test, test_labels),
        "linear_probe_accuracy": linear_probe_accuracy(train, train_labels, test, test_labels),
        "silhouette": silhouette,
        "mean_within_class_distance": within_mean,
        "mean_between_class_distance": between_mean,
        "between_within_ratio": between_mean / within_mean if within_mean > 0 else float("inf"),
    }


def raw_pixel_knn_accuracy(train_images: Tensor, train_labels: Tensor, test_images: Tensor,
                           test_labels: Tensor) -> float:
    """kNN accuracy on raw pixels: the floor any learned embedding should beat."""
    return knn_accuracy(train_images.flatten(1).float() / 255, train_labels,
                        test_images.flatten(1).float() / 255, test_labels)


def tsne_2d(embeddings: Tensor, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) t-SNE map (PCA initialisation, perplexity scaled to small N)."""
    from sklearn.manifold import TSNE

    n = len(embeddings)
    if n < 5:
        return np.zeros((n, 2))
    perplexity = float(min(30, max(2, (n - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(embeddings.double().numpy())


def pair_distances(embeddings: Tensor, labels: Tensor, n_pairs: int = 10000,
                   seed: int = 0) -> tuple[Tensor, Tensor]:
    """Euclidean distances of seeded balanced pairs (latentlab.data.pairs.balanced_pairs).

    embeddings: (N, D), labels: (N,) -> (positive-pair distances, negative-pair distances)."""
    from latentlab.data.pairs import balanced_pairs

    generator = torch.Generator().manual_seed(seed)
    first, second, is_positive = balanced_pairs(labels, n_pairs, generator)
    distance = (embeddings[first].double() - embeddings[second].double()).norm(dim=1).float()
    return distance[is_positive], distance[~is_positive]


def pair_metrics(positive: Tensor, negative: Tensor) -> dict[str, float]:
    """Mean distance of positive and negative pairs, and the ROC AUC of telling them apart by
    distance (1: every positive pair is closer than every negative one; 0.5: chance)."""
    from sklearn.metrics import roc_auc_score

    is_positive = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    closeness = -torch.cat([positive, negative]).double().numpy()
    auc = (float(roc_auc_score(is_positive, closeness))
           if len(positive) and len(negative) else float("nan"))
    def mean(values: Tensor) -> float:
        return float(values.mean()) if len(values) else float("nan")

    return {"positive_pair_mean_distance": mean(positive),
            "negative_pair_mean_distance": mean(negative), "pair_auc": auc}
