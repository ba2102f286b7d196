"""Metrics as pure functions of tensors: how well embeddings separate classes, how close
reconstructions are. Distances are Euclidean on the embeddings as `embed()` returns them
(models whose loss works on the unit sphere return L2-normalised embeddings)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from latentlab.losses import assignment_errors, mean_squared_error


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


def psnr(estimate: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, pixels in [0, 1]: (N, ...) -> (N,)."""
    mse = (estimate - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def reconstruction_metrics(reconstructions: Tensor, originals: Tensor) -> dict[str, float]:
    """Mean squared error and mean per-image PSNR (dB), pixels in [0, 1]."""
    return {"reconstruction_mse": float((reconstructions - originals).pow(2).mean()),
            "reconstruction_psnr": float(psnr(reconstructions, originals).mean())}


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


def active_units(posterior_means: Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across the data (Burda et al. 2016):
    Cov_x(E_q(z|x)[z_d]) > threshold. posterior_means: (N, D) -> count in 0..D."""
    if len(posterior_means) < 2:
        return 0
    variance = posterior_means.double().var(dim=0, unbiased=True)
    return int((variance > threshold).sum())


def gaussian_weights(size: int, sigma: float = 1.5) -> Tensor:
    """(size,) Gaussian weights summing to 1, float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    return g / g.sum()


def ssim(estimate: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004).

    (N, C, H, W) in [0, 1] -> (N,). The paper's form: local means, variances and covariance
    under an 11x11 Gaussian window (sigma 1.5) over 'valid' positions only, K1 = 0.01,
    K2 = 0.03, data range 1; the SSIM map is averaged over positions and channels (as
    scikit-image's structural_similarity with gaussian_weights=True, use_sample_covariance=False
    does per channel). Images smaller than the window use the largest odd window that fits."""
    size = min(window, estimate.shape[-1], estimate.shape[-2])
    size -= 1 - size % 2
    x, y = estimate.double(), target.double()
    # the five local moments in one grouped convolution; the Gaussian is separable, so a
    # column pass and a row pass of `size` taps replace size^2 taps (in float64, which has
    # no fast CPU kernels, that is what made scoring 10,000 mixtures take a minute)
    moments = torch.cat([x, y, x * x, y * y, x * y], 1)
    groups = moments.shape[1]
    g = gaussian_weights(size, sigma).to(estimate.device)
    moments = torch.nn.functional.conv2d(moments, g.view(1, 1, size, 1).expand(groups, 1, size, 1),
                                         groups=groups)
    moments = torch.nn.functional.conv2d(moments, g.view(1, 1, 1, size).expand(groups, 1, 1, size),
                                         groups=groups)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, 1)
    var_x = xx - mu_x.pow(2)
    var_y = yy - mu_y.pow(2)
    covariance = xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)
             / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2)))
    return index.flatten(1).mean(1).to(estimate.dtype)


def align_to_sources(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                     source_2: Tensor) -> tuple[Tensor, Tensor]:
    """Swap the outputs of each sample whose swapped assignment has the lower MSE, so that
    estimate_1 goes with source_1 (the permutation-invariant matching of every metric)."""
    straight, swapped = assignment_errors(estimate_1, estimate_2, source_1, source_2)
    swap = (swapped < straight).view(-1, *[1] * (estimate_1.ndim - 1))
    return (torch.where(swap, estimate_2, estimate_1), torch.where(swap, estimate_1, estimate_2))


def separation_scores(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                      source_2: Tensor) -> dict[str, Tensor]:
    """Per-mixture MSE, PSNR (dB) and SSIM under the best assignment, each averaged over the
    two outputs. All inputs (B, C, H, W) in [0, 1]; each result (B,)."""
    first, second = align_to_sources(estimate_1, estimate_2, source_1, source_2)
    return {
        "mse": (mean_squared_error(first, source_1) + mean_squared_error(second, source_2)) / 2,
        "psnr": (psnr(first, source_1) + psnr(second, source_2)) / 2,
        "ssim": (ssim(first, source_1) + ssim(second, source_2)) / 2,
    }


def class_pair_means(values: Tensor, classes: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Mean of per-pair values (N,) for each unordered pair of classes (N, 2): a symmetric
    (K, K) float64 matrix of means (NaN where no pair falls) and the (K, K) pair counts."""
    a, b = classes[:, 0].long(), classes[:, 1].long()
    sums = torch.zeros(n_classes * n_classes, dtype=torch.float64)
    counts = torch.zeros(n_classes * n_classes, dtype=torch.int64)
    # every pair goes in at (a, b) and at (b, a); a same-class pair lands twice on the
    # diagonal, which leaves its mean as it is and is halved out of its count below
    for row, column in ((a, b), (b, a)):
        sums.index_add_(0, row * n_classes + column, values.double())
        counts.index_add_(0, row * n_classes + column, torch.ones_like(row))
    sums, counts = sums.view(n_classes, n_classes), counts.view(n_classes, n_classes)
    means = sums / counts.clamp(min=1)
    means[counts == 0] = float("nan")
    counts.diagonal().div_(2, rounding_mode="floor")
    return means, counts


def tile_swap_psnr(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                   source_2: Tensor, tile: int) -> Tensor:
    """Per-mixture PSNR (dB) if each tile x tile square could match the outputs to the
    sources its own way, instead of once per image: an oracle bound. Its gain over the usual
    score is the error a separator makes by mixing up, in parts of the image, which source
    is which. All inputs (B, C, H, W) in [0, 1]; the MSE is averaged over both outputs (for
    outputs m +- d both have the same error); the result is (B,)."""
    straight = (estimate_1 - source_1).pow(2) + (estimate_2 - source_2).pow(2)
    swapped = (estimate_1 - source_2).pow(2) + (estimate_2 - source_1).pow(2)
    h, w = straight.shape[-2:]
    pad = (0, -w % tile, 0, -h % tile)  # zero error in the padding: it adds to neither

    def per_tile(error: Tensor) -> Tensor:
        summed = error.sum(1, keepdim=True)
        return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(summed, pad), tile)

    best = torch.minimum(per_tile(straight), per_tile(swapped)).flatten(1).sum(1) * tile**2
    mse = best / (2 * straight[0].numel())
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def pair_distances(embeddings: Tensor, labels: Tensor, n_pairs: int = 10000,
                   seed: int = 0) -> tuple[Tensor, Tensor]:
    """Euclidean distances of seeded balanced pairs (latentlab.pairs.balanced_pairs).

    embeddings: (N, D), labels: (N,) -> (positive-pair distances, negative-pair distances)."""
    from latentlab.pairs import balanced_pairs

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


def shortcut_ratio(gain_real: float, gain_twins: float) -> float:
    """Gain over the mixture on real pixels / gain on their JPEG twins (nan if the latter
    is not positive: there is no gain to share out)."""
    return gain_real / gain_twins if gain_twins > 0 else float("nan")
