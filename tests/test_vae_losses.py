"""Exact values of the VAE's loss pieces (latentlab.losses) and active units."""

import math

import pytest
import torch

from latentlab.evaluation import active_units
from latentlab.losses import (
    beta_vae_loss,
    bits_per_dim,
    discretized_logistic_log_likelihood,
    gaussian_kl,
    negative_elbo,
)


def test_kl_of_identical_gaussians_is_zero():
    # q(z|x) = N(0, I) is the prior itself
    assert torch.equal(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3))


def test_kl_matches_closed_form_by_hand():
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - ln s^2 - 1), summed over dimensions
    mean = torch.tensor([[1.0, -2.0]])
    log_variance = torch.tensor([[0.0, math.log(4.0)]])
    expected = 0.5 * (1 + 1 - 0 - 1) + 0.5 * (4 + 4 - math.log(4) - 1)
    assert gaussian_kl(mean, log_variance).item() == pytest.approx(expected, abs=1e-6)


def test_elbo_is_reconstruction_plus_kl():
    reconstruction, kl = torch.tensor([100.0, 50.5]), torch.tensor([3.0, 0.25])
    assert torch.equal(negative_elbo(reconstruction, kl), torch.tensor([103.0, 50.75]))
    assert beta_vae_loss(reconstruction, kl).item() == pytest.approx((103.0 + 50.75) / 2)
    assert beta_vae_loss(reconstruction, kl, beta=4.0).item() == pytest.approx(
        (100 + 12 + 50.5 + 1) / 2)


def test_uniform_model_on_8_bit_data_costs_8_bits_per_dim():
    dims = 3 * 32 * 32
    nll = torch.full((4,), dims * math.log(256))  # every pixel channel has probability 1/256
    assert torch.allclose(bits_per_dim(nll, dims), torch.full((4,), 8.0))


def grid() -> torch.Tensor:
    return torch.arange(256, dtype=torch.float64) / 127.5 - 1  # the 8-bit grid in [-1, 1]


@pytest.mark.parametrize("mean,log_scale", [(0.0, -1.0), (0.7, -4.0), (-1.2, 0.5), (0.0, -7.0)])
def test_discretized_logistic_probabilities_sum_to_one(mean, log_scale):
    x = grid()
    log_p = discretized_logistic_log_likelihood(x, torch.full_like(x, mean),
                                                torch.full_like(x, log_scale))
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_discretized_logistic_exact_values():
    x = grid()
    mean, log_scale = torch.zeros_like(x), torch.zeros_like(x)  # logistic with scale 1
    log_p = discretized_logistic_log_likelihood(x, mean, log_scale)
    half = 1 / 255
    # an interior bin: sigmoid(x + 1/255) - sigmoid(x - 1/255); the edges reach to infinity
    assert log_p[128].exp().item() == pytest.approx(
        (torch.sigmoid(x[128] + half) - torch.sigmoid(x[128] - half)).item(), rel=1e-9)
    assert log_p[0].exp().item() == pytest.approx(torch.sigmoid(torch.tensor(-1 + half)).item())
    top = 1 - torch.sigmoid(torch.tensor(1 - half)).item()
    assert log_p[255].exp().item() == pytest.approx(top)


def test_discretized_logistic_is_finite_far_from_the_mean():
    x = torch.tensor([0.0])
    log_p = discretized_logistic_log_likelihood(x, torch.tensor([0.9]), torch.tensor([-7.0]))
    assert torch.isfinite(log_p).all() and log_p.item() < -100


def test_active_units_counts_dimensions_that_vary():
    means = torch.tensor([[0.0, 1.0, 5.0], [0.0, 1.05, -5.0], [0.0, 0.95, 5.0]])
    # variances 0, 0.0025 and 33.3: only the last exceeds 0.01
    assert active_units(means) == 1
    assert active_units(means, threshold=0.001) == 2
