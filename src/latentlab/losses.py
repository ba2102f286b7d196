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


def margin_contrastive_loss(first: Tensor, second: Tensor, is_positive: Tensor,
                            margin: float = 1.0) -> Tensor:
    """Pairwise contrastive loss of Hadsell, Chopra and LeCun 2006 ("Dimensionality reduction
    by learning an invariant mapping"), averaged over pairs.

    first, second: (P, D) embeddings of the two images of each pair; is_positive: (P,) bool,
    True where the two images share a class. With d the Euclidean distance of a pair:
    positive pairs cost d^2 / 2 (pulled together), negative pairs max(0, margin - d)^2 / 2
    (pushed apart until they are margin apart, then left alone). Returns a scalar."""
    squared = (first - second).pow(2).sum(dim=1)  # (P,)
    # the small epsilon keeps the gradient of sqrt finite for identical negatives
    distance = (squared + 1e-12).sqrt()
    positive = is_positive.to(first.dtype)
    per_pair = positive * squared + (1 - positive) * (margin - distance).clamp_min(0).pow(2)
    return 0.5 * per_pair.mean()


def supcon_loss(embeddings: Tensor, labels: Tensor | None = None,
                temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out); with labels=None it is
    SimCLR's NT-Xent (Chen et al. 2020), where only the other views of the same image count
    as positives.

    embeddings: (B, V, D) L2-normalised, V views of each of B images (V >= 2 for NT-Xent;
    V = 1 works with labels); labels: (B,) class ids or None. Every one of the B*V embeddings
    is an anchor; for anchor i with positives P(i) (same image or, with labels, same class,
    never i itself) and A(i) all embeddings but i:

        loss_i = -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t))

    averaged over anchors that have at least one positive. Returns a scalar."""
    b, v, _ = embeddings.shape
    z = embeddings.reshape(b * v, -1)  # (N, D), view-major within each image
    ids = torch.arange(b, device=z.device) if labels is None else labels.to(z.device)
    ids = ids.repeat_interleave(v)  # (N,)
    logits = z @ z.T / temperature  # (N, N)
    self_mask = torch.eye(b * v, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (N, N)
    positive = (ids[:, None] == ids[None, :]) & ~self_mask  # (N, N)
    n_positive = positive.sum(dim=1)  # (N,)
    has_positive = n_positive > 0
    if not has_positive.any():
        raise ValueError("supcon_loss: no anchor has a positive; give V >= 2 views or labels "
                         "with repeated classes")
    positive_log_prob = log_prob.masked_fill(~positive, 0).sum(dim=1)  # (N,)
    return -(positive_log_prob[has_positive] / n_positive[has_positive]).mean()
