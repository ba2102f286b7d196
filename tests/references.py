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


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / MSE) per image, pixels in [0, 1]: (N, ...) -> (N,) float64."""
    return 10 * torch.log10(1 / (estimate.double() - target.double()).pow(2).flatten(1).mean(1))


def ssim(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004) with scipy's Gaussian filter: sigma 1.5 over an 11x11
    window, or the largest odd one that fits the image, at the positions where the window lies
    wholly inside it; K1 = 0.01, K2 = 0.03, data range 1, the map averaged over positions and
    channels. (N, C, H, W) -> (N,) float64."""
    from scipy.ndimage import gaussian_filter

    size = min(11, *estimate.shape[-2:])
    radius = (size - 1) // 2  # odd windows only: 8 pixels take a 7x7 one
    n, c, h, w = estimate.shape
    x = estimate.double().reshape(n * c, h, w).numpy()
    y = target.double().reshape(n * c, h, w).numpy()

    def blur(z):  # sigma 0 on the first axis: each image on its own
        blurred = gaussian_filter(z, sigma=(0, 1.5, 1.5), truncate=radius / 1.5)
        return blurred[:, radius: h - radius, radius: w - radius]

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    covariance = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)
             / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)))
    return torch.from_numpy(index.reshape(n, -1).mean(1))


def separation_reference(first: torch.Tensor, second: torch.Tensor, x1: torch.Tensor,
                         x2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-mixture PSNR and SSIM of a separator's two outputs against the two sources, under
    whichever matching of outputs to sources has the lower mean squared error; each the mean
    over the two outputs. All (N, C, H, W) in [0, 1] -> (N,) float64 each."""
    def mse(a, b):
        return (a.double() - b.double()).pow(2).flatten(1).mean(1)

    swap = (mse(first, x2) + mse(second, x1) < mse(first, x1) + mse(second, x2))
    swap = swap.view(-1, 1, 1, 1)
    first, second = torch.where(swap, second, first), torch.where(swap, first, second)
    return {"psnr": (psnr(first, x1) + psnr(second, x2)) / 2,
            "ssim": (ssim(first, x1) + ssim(second, x2)) / 2}
