"""A VAE's scores: the ELBO and its terms, bits/dim, active latent units."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from latentlab.losses import bits_per_dim, gaussian_kl, negative_elbo, reparameterize


def active_units(posterior_means: Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across the data (Burda et al. 2016):
    Cov_x(E_q(z|x)[z_d]) > threshold. posterior_means: (N, D) -> count in 0..D."""
    if len(posterior_means) < 2:
        return 0
    variance = posterior_means.double().var(dim=0, unbiased=True)
    return int((variance > threshold).sum())


@torch.no_grad()
def elbo_metrics(model: Any, images: Tensor, seed: int = 0,
                 batch_size: int = 500) -> dict[str, float]:
    """Test-set ELBO terms (nats per image, one seeded z per image), bits/dim, active units."""
    model.eval()
    torch.manual_seed(seed)
    reconstructions, kls, means = [], [], []
    for start in range(0, len(images), batch_size):
        x = model.prepare(images[start: start + batch_size], model.input_size())
        mean, log_variance = model.posterior(x)
        z = reparameterize(mean, log_variance)
        reconstructions.append(model.reconstruction_nll(x, z).cpu())
        kls.append(gaussian_kl(mean, log_variance).cpu())
        means.append(mean.cpu())
    reconstruction, kl = torch.cat(reconstructions), torch.cat(kls)
    nll = negative_elbo(reconstruction, kl)
    return {"test_elbo": -float(nll.mean()),
            "test_reconstruction_nll": float(reconstruction.mean()),
            "test_kl": float(kl.mean()),
            "test_bits_per_dim": float(bits_per_dim(nll, model.dims()).mean()),
            "active_units": active_units(torch.cat(means)),
            "latent_dim": model.latent_dim}
