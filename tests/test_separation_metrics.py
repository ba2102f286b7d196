"""Permutation-invariant loss, PSNR and SSIM on tiny inputs with known answers."""

import math

import pytest
import torch

from latentlab.losses import (
    assignment_errors,
    permutation_invariant_log_mse,
    permutation_invariant_mse,
)
from latentlab.metrics.images import align_to_sources, psnr, separation_scores, ssim, tile_swap_psnr


def images(seed: int, shape=(3, 2, 8, 8)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_pit_is_zero_for_either_order_of_the_right_answer():
    x1, x2 = images(0), images(1)
    assert float(permutation_invariant_mse(x1, x2, x1, x2)) == 0.0
    assert float(permutation_invariant_mse(x2, x1, x1, x2)) == 0.0


def test_pit_equals_the_plain_loss_when_the_order_is_right():
    x1, x2 = images(0), images(1)
    e1, e2 = x1 + 0.05 * images(2), x2 - 0.03 * images(3)
    plain = ((e1 - x1).pow(2).mean() + (e2 - x2).pow(2).mean()) / 2
    assert torch.allclose(permutation_invariant_mse(e1, e2, x1, x2), plain, atol=1e-7)


def test_pit_takes_the_better_assignment_per_sample():
    # one-pixel images: sample 0 is answered in order, sample 1 swapped
    x1 = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    x2 = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    e1 = torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)
    e2 = torch.tensor([0.9, 1.0]).view(2, 1, 1, 1)
    straight, swapped = assignment_errors(e1, e2, x1, x2)
    assert torch.allclose(straight, torch.tensor([0.01, 0.82]))
    assert torch.allclose(swapped, torch.tensor([0.81, 0.02]))
    assert math.isclose(float(permutation_invariant_mse(e1, e2, x1, x2)), 0.015, rel_tol=1e-6)
    first, second = align_to_sources(e1, e2, x1, x2)
    assert first.flatten().tolist() == pytest.approx([0.1, 1.0])
    assert second.flatten().tolist() == pytest.approx([0.9, 0.2])


def test_pit_gradient_does_not_vanish_when_both_outputs_equal_the_mixture():
    x1, x2 = images(0), images(1)
    m = ((x1 + x2) / 2).requires_grad_()
    permutation_invariant_mse(m, m.detach(), x1, x2).backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_psnr_known_values():
    target = torch.zeros(2, 1, 4, 4)
    estimate = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.01)])
    assert psnr(estimate, target).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)


def test_ssim_of_an_image_with_itself_is_one():
    x = images(0, (2, 3, 16, 16))
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term():
    # no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    a, b = 0.2, 0.6
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    result = ssim(torch.full((1, 1, 12, 12), a), torch.full((1, 1, 12, 12), b))
    assert float(result) == pytest.approx(expected, rel=1e-6)


def test_ssim_with_a_one_pixel_window_is_the_per_pixel_formula():
    x = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    y = torch.tensor([[[[0.5, 0.5], [0.0, 0.75]]]])
    c1 = 1e-4
    per_pixel = (2 * x * y + c1) / (x * x + y * y + c1)  # variances are 0: structure term 1
    assert float(ssim(x, y, window=1)) == pytest.approx(float(per_pixel.mean()), rel=1e-6)


def test_ssim_matches_a_gaussian_filter_reference():
    """The scikit-image recipe (gaussian_weights, sigma 1.5, truncate 3.5 -> 11x11,
    population covariance, border of 5 cropped) written with scipy's gaussian_filter."""
    from scipy.ndimage import gaussian_filter

    x, y = images(5, (1, 1, 20, 20)), images(6, (1, 1, 20, 20))
    a, b = x[0, 0].double().numpy(), y[0, 0].double().numpy()

    def blur(z):
        return gaussian_filter(z, sigma=1.5, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
             / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    expected = index[5:-5, 5:-5].mean()
    assert float(ssim(x, y)) == pytest.approx(float(expected), abs=1e-6)
    assert 0 < expected < 0.2  # unrelated noise images are dissimilar


def test_separation_scores_use_the_best_assignment():
    x1, x2 = images(0), images(1)
    scores = separation_scores(x2, x1, x1, x2)  # right answer, swapped order
    assert torch.all(scores["mse"] == 0)
    assert torch.allclose(scores["ssim"], torch.ones(len(x1)), atol=1e-6)
    assert torch.all(scores["psnr"] >= 99)


def test_tile_swap_oracle_forgives_sources_swapped_in_one_half_only_at_that_scale():
    x1, x2 = images(0, (3, 2, 8, 8)), images(1, (3, 2, 8, 8))
    m = (x1 + x2) / 2
    d = (x1 - x2) / 2
    d[..., :4] *= -1  # right answer, but the sources swap places in the left half
    first, second = m + d, m - d
    whole = separation_scores(first, second, x1, x2)["psnr"]
    assert torch.all(whole < 40)
    # a tile as large as the image: the usual score (outputs m +- d err equally)
    assert torch.allclose(tile_swap_psnr(first, second, x1, x2, 8), whole, atol=1e-4)
    assert torch.allclose(tile_swap_psnr(first, second, x1, x2, 16), whole, atol=1e-4)
    # 4x4 tiles never straddle the two halves: every tile can take the right assignment
    assert torch.all(tile_swap_psnr(first, second, x1, x2, 4) >= 99)
    # 3x3 tiles do (columns 3-5), so they cannot recover all of it, but more than one tile
    straddled = tile_swap_psnr(first, second, x1, x2, 3)
    assert torch.all((straddled > whole) & (straddled < 99))


def test_log_mse_is_the_negative_psnr_of_the_better_assignment():
    x1 = torch.zeros(1, 1, 2, 2)
    x2 = torch.ones(1, 1, 2, 2)
    e1, e2 = torch.full_like(x1, 0.9), torch.full_like(x1, 0.1)  # swapped, error 0.1 each
    value = permutation_invariant_log_mse(e1, e2, x1, x2, eps=0.0)
    assert float(value) == pytest.approx(-20.0, abs=1e-4)
