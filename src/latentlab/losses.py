"""Losses as pure functions of tensors, with shapes and the paper they come from."""

from __future__ import annotations

import torch
from torch import Tensor


def reparameterize(mean: Tensor, log_variance: Tensor) -> Tensor:
    """z = mean + sigma * eps, eps ~ N(0, I) (Kingma and Welling 2014). (B, D) -> (B, D)."""
    return mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)


def gaussian_kl(mean: Tensor, log_variance: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(log_variance))) || N(0, I)) per sample, in nats. (B, D) -> (B,).

    Closed form: 0.5 * sum(mean^2 + var - log var - 1)."""
    return 0.5 * (mean.pow(2) + log_variance.exp() - log_variance - 1).sum(dim=1)


def mean_squared_error(estimate: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per sample: (B, ...) -> (B,)."""
    return (estimate - target).pow(2).flatten(1).mean(1)


def assignment_errors(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                      source_2: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample MSE of both ways of matching two outputs to two sources.

    All inputs (B, C, H, W) -> (straight (B,), swapped (B,)), each the mean of the two
    outputs' errors: straight matches estimate_1 to source_1, swapped matches it to source_2."""
    straight = (mean_squared_error(estimate_1, source_1)
                + mean_squared_error(estimate_2, source_2)) / 2
    swapped = (mean_squared_error(estimate_1, source_2)
               + mean_squared_error(estimate_2, source_1)) / 2
    return straight, swapped


def permutation_invariant_mse(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                              source_2: Tensor) -> Tensor:
    """Permutation-invariant MSE (PIT; Yu et al., ICASSP 2017) for two sources, as a scalar.

    The order of a separator's two outputs is arbitrary, so each sample is scored with the
    better of its two assignments: mean over B of min(straight, swapped) from
    `assignment_errors`. Inputs (B, C, H, W), pixels in [0, 1]. On a tie the gradient
    follows the straight assignment (torch.minimum would split it in halves that cancel,
    leaving a separator that answers m for both outputs stuck there)."""
    straight, swapped = assignment_errors(estimate_1, estimate_2, source_1, source_2)
    return torch.where(swapped < straight, swapped, straight).mean()


def permutation_invariant_log_mse(estimate_1: Tensor, estimate_2: Tensor, source_1: Tensor,
                                  source_2: Tensor, eps: float = 1e-5) -> Tensor:
    """Mean over B of 10 log10(min(straight, swapped) + eps): the negative per-mixture PSNR
    (dB, pixels in [0, 1]) under the better assignment, as a scalar. Inputs (B, C, H, W).

    The benchmark averages PSNR per mixture, so training on its log-domain error weights
    mixtures as the metric does, where plain MSE lets the hardest mixtures dominate (the
    argument for SI-SDR losses in speech separation; Le Roux et al., ICASSP 2019). eps caps
    the reward for a single mixture at 50 dB. Ties follow the straight assignment."""
    straight, swapped = assignment_errors(estimate_1, estimate_2, source_1, source_2)
    best = torch.where(swapped < straight, swapped, straight)
    return 10 * torch.log10(best + eps).mean()
