"""Contrastive and VAE losses, and active units, on tiny inputs whose answer is known exactly."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentlab.losses import (
    beta_vae_loss,
    bits_per_dim,
    discretized_logistic_log_likelihood,
    gaussian_kl,
    margin_contrastive_loss,
    negative_elbo,
    supcon_loss,
)
from latentlab.metrics.likelihood import active_units, elbo_metrics


def test_identical_positives_cost_nothing():
    z = torch.randn(5, 3)
    assert margin_contrastive_loss(z, z.clone(), torch.ones(5, dtype=torch.bool)) == 0


def test_negatives_beyond_the_margin_cost_nothing():
    first = torch.zeros(3, 2)
    second = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, -1.5]])  # distances 1, 3, 1.5
    loss = margin_contrastive_loss(first, second, torch.zeros(3, dtype=torch.bool), margin=1.0)
    assert loss == 0


def test_margin_loss_exact_values():
    first = torch.zeros(2, 2)
    second = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # distances 2 and 0.5
    is_positive = torch.tensor([True, False])
    # positive: d^2 / 2 = 2; negative: (1 - 0.5)^2 / 2 = 0.125; mean over the two pairs
    loss = margin_contrastive_loss(first, second, is_positive, margin=1.0)
    assert loss.item() == pytest.approx((2 + 0.125) / 2, abs=1e-6)


def test_margin_loss_of_identical_negatives_costs_the_margin_and_has_a_zero_gradient():
    # distance 0: each pair costs margin^2 / 2; the gradient of the distance is 0 (not the
    # NaN of sqrt's derivative at 0, which would poison every weight)
    z = torch.zeros(2, 4, requires_grad=True)
    loss = margin_contrastive_loss(z, z, torch.zeros(2, dtype=torch.bool), margin=2.0)
    loss.backward()
    assert loss.item() == pytest.approx(2.0, abs=1e-5)
    assert torch.equal(z.grad, torch.zeros(2, 4))


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_closed_form(temperature):
    # two images, two identical views each, the images orthogonal: for every anchor the
    # positive has similarity 1 and the two negatives 0, so
    # loss = -1/t + log(e^(1/t) + 2) = log(1 + 2 e^(-1/t))
    e1, e2 = torch.eye(2, dtype=torch.float64)
    z = torch.stack([torch.stack([e1, e1]), torch.stack([e2, e2])])  # (B=2, V=2, D=2)
    expected = math.log(1 + 2 * math.exp(-1 / temperature))
    assert supcon_loss(z, temperature=temperature).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_two_points_is_zero():
    # one image, two views: the positive is the only other point, its softmax weight is 1
    z = F.normalize(torch.randn(1, 2, 8), dim=-1)
    assert supcon_loss(z).item() == pytest.approx(0.0, abs=1e-6)


def reference_supcon(z, ids, t):
    """The formula written out anchor by anchor."""
    n = len(z)
    total, anchors = 0.0, 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = [p for p in others if ids[p] == ids[i]]
        if not positives:
            continue
        log_denominator = torch.logsumexp(torch.stack([z[i] @ z[a] / t for a in others]), 0)
        total += -sum(z[i] @ z[p] / t - log_denominator for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_supcon_matches_the_formula_anchor_by_anchor():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(6, 2, 5), dim=-1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    flat = z.reshape(12, 5)
    assert supcon_loss(z, labels, 0.2).item() == pytest.approx(
        reference_supcon(flat, labels.repeat_interleave(2), 0.2).item(), rel=1e-5)
    assert supcon_loss(z, None, 0.2).item() == pytest.approx(
        reference_supcon(flat, torch.arange(6).repeat_interleave(2), 0.2).item(), rel=1e-5)


def test_supcon_with_distinct_labels_is_nt_xent():
    z = F.normalize(torch.randn(4, 2, 3), dim=-1)
    assert supcon_loss(z, torch.tensor([3, 1, 0, 2])) == pytest.approx(supcon_loss(z).item())


def test_supcon_single_view_needs_shared_labels():
    z = F.normalize(torch.randn(3, 1, 4), dim=-1)
    with pytest.raises(ValueError):
        supcon_loss(z)
    labels = torch.tensor([0, 0, 1])  # anchors 0 and 1 are each other's positive; 2 has none
    assert supcon_loss(z, labels).item() == pytest.approx(
        reference_supcon(z.reshape(3, 4), labels, 0.1).item(), rel=1e-5)


# ----------------------------------------------------------------------------- VAE

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


def test_discretized_logistic_far_from_the_mean_is_near_the_exact_log_mass():
    # 0.9 / e^-7 = 987 scales from the mean: the bin mass sigmoid(u) - sigmoid(l) underflows
    # in float32. In log space it is log sigmoid(u) + log(1 - exp(log sigmoid(l) - log
    # sigmoid(u))); the code's density-times-width stand-in must come within 1% of it (a
    # clamped log of the underflowed mass would give log(1e-12) = -27.6).
    x = torch.tensor([0.0])
    log_p = discretized_logistic_log_likelihood(x, torch.tensor([0.9]), torch.tensor([-7.0]))
    scale = math.exp(7.0)
    upper, lower = (torch.tensor((0 - 0.9 + h / 255) * scale, dtype=torch.float64)
                    for h in (1, -1))
    exact = F.logsigmoid(upper) + torch.log1p(-torch.exp(F.logsigmoid(lower)
                                                         - F.logsigmoid(upper)))
    assert log_p.item() == pytest.approx(exact.item(), rel=0.01)
    # and it is what its docstring says: log of the density at the bin's centre x 2/255
    c = torch.tensor(-0.9 * scale, dtype=torch.float64)
    log_density = c + 7.0 - 2 * F.softplus(c)  # logistic density, scale e^-7, at distance c
    assert log_p.item() == pytest.approx((log_density + math.log(2 / 255)).item(), rel=1e-5)


def test_active_units_counts_dimensions_that_vary():
    means = torch.tensor([[0.0, 1.0, 5.0], [0.0, 1.05, -5.0], [0.0, 0.95, 5.0]])
    # variances 0, 0.0025 and 33.3: only the last exceeds 0.01
    assert active_units(means) == 1
    assert active_units(means, threshold=0.001) == 2


class FixedVAE:
    """A stand-in VAE whose outputs are fixed: posterior means and log-variances given per
    image (looked up by the image's first pixel), and a reconstruction NLL that is 10 x that
    pixel whatever z is. 3 x 2 x 5 = 30 pixel channels."""

    latent_dim = 3
    means = torch.tensor([[1.0, 0.00, 0.5], [-1.0, 0.05, 0.5], [1.0, 0.00, 0.5],
                          [-1.0, 0.05, 0.5], [1.0, 0.00, 0.5]])
    log_variances = torch.tensor([[0.0, 0.0, 0.0], [math.log(4.0), 0.0, 0.0]]).repeat(3, 1)[:5]

    def eval(self):
        return self

    def input_size(self):
        return (2, 5)

    def dims(self):
        return 30

    def prepare(self, images, size=None):
        return images.float()

    def posterior(self, x):
        index = x[:, 0, 0, 0].long()
        return self.means[index], self.log_variances[index]

    def reconstruction_nll(self, x, z):
        return 10 * x[:, 0, 0, 0]


def test_elbo_metrics_of_a_model_whose_outputs_are_fixed():
    images = torch.arange(5).view(5, 1, 1, 1).expand(5, 3, 2, 5).clone()
    metrics = elbo_metrics(FixedVAE(), images, batch_size=2)  # three batches
    # KL = 0.5 sum(mean^2 + var - ln var - 1) by hand: var 1 gives 0.5 (1 + 0.25) = 0.625 for
    # the even images; the odd ones add 0.5 (4 - ln 4 - 1) for their first dimension
    kl = [0.625, 0.625 + 0.00125 + 0.5 * (3 - math.log(4)), 0.625, 0.625 + 0.00125
          + 0.5 * (3 - math.log(4)), 0.625]
    nll = [10 * i + k for i, k in enumerate(kl)]
    assert metrics["test_kl"] == pytest.approx(sum(kl) / 5, rel=1e-6)
    assert metrics["test_reconstruction_nll"] == pytest.approx(20.0, rel=1e-6)
    assert metrics["test_elbo"] == pytest.approx(-sum(nll) / 5, rel=1e-6)
    assert metrics["test_bits_per_dim"] == pytest.approx(sum(nll) / 5 / (30 * math.log(2)),
                                                         rel=1e-6)
    # dimension 0 varies (variance 1.2), dimension 1 barely (0.00075 < 0.01), 2 not at all
    assert metrics["active_units"] == 1 and metrics["latent_dim"] == 3


def test_contrastive_losses_stay_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(64, 2, 16, generator=generator), dim=2)
    labels = torch.randint(0, 4, (64,), generator=generator)
    positive = labels[:32] == labels[32:]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        supcon = supcon_loss(z, labels)
        margin = margin_contrastive_loss(z[:32, 0], z[32:, 0], positive)
    assert supcon.dtype == margin.dtype == torch.float32
    # the same value as outside autocast: similarities were not rounded to bf16's 8 bits
    assert torch.allclose(supcon, supcon_loss(z, labels), rtol=0, atol=1e-6)
    assert torch.allclose(margin, margin_contrastive_loss(z[:32, 0], z[32:, 0], positive),
                          rtol=0, atol=1e-6)
