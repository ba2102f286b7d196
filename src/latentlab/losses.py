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
