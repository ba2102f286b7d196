"""The VAE models: shapes, ranges, gradients, and loading a saved one."""

import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record
from latentlab.files import save_atomic
from latentlab.models import MLPVAE, VAES, ConvVAE, causal_context


@pytest.mark.parametrize("cls,shape", [(MLPVAE, (1, 8, 8)), (ConvVAE, (3, 32, 32)),
                                       (ConvVAE, (1, 28, 28))])
def test_vae_shapes_ranges_and_gradients(cls, shape):
    torch.manual_seed(0)
    model = cls(shape, latent_dim=6)
    images = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    x = model.prepare(images, model.input_size())
    torch.manual_seed(1)
    reconstruction, kl = model(x)
    assert reconstruction.shape == kl.shape == (4,)
    # the KL in closed form, 0.5 sum(mean^2 + var - ln var - 1), and -log p(x|z) at the z
    # drawn as mean + sigma * eps with the same seed; a probability of 8-bit pixels is at
    # most 1, so that is positive
    with torch.no_grad():
        mean, log_variance = model.posterior(x)
        torch.manual_seed(1)
        z = mean + (0.5 * log_variance).exp() * torch.randn(mean.shape)
        assert torch.allclose(kl, 0.5 * (mean**2 + log_variance.exp() - log_variance - 1).sum(1),
                              rtol=1e-5)
        assert torch.allclose(reconstruction, model.reconstruction_nll(x, z), rtol=1e-5)
    assert (reconstruction > 0).all()
    (reconstruction + kl).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    model.eval()
    assert model.embed(images).shape == (4, 6)
    assert model.reconstruct(images).shape == (4, *shape)
    for noise in (False, True):
        samples = model.sample(5, noise=noise, seed=1)
        assert samples.shape == (5, *shape)  # the data's shape and range
        assert samples.min() >= 0 and samples.max() <= 1


def test_noisy_samples_lie_on_the_8_bit_grid():
    samples = MLPVAE((1, 8, 8), latent_dim=4).eval().sample(3, noise=True, seed=0)
    assert torch.equal(samples * 255, torch.round(samples * 255))


def test_sampling_is_seeded():
    model = ConvVAE((3, 32, 32), latent_dim=4).eval()
    assert torch.equal(model.sample(2, seed=3), model.sample(2, seed=3))


def test_embed_is_the_posterior_mean():
    model = MLPVAE((1, 8, 8), latent_dim=4).eval()
    images = torch.rand(3, 1, 8, 8)
    mean, _ = model.posterior(model.prepare(images))
    assert torch.equal(model.embed(images), mean)
    assert torch.equal(model.embed(images), model.embed(images))  # no sampling


def test_loaded_vae_samples(tmp_path):
    model = VAES["conv"]((3, 32, 32), latent_dim=5).eval()
    save_atomic(model_record(model, {}), tmp_path / "vae_model.pth")
    loaded = latentlab.load(tmp_path / "vae_model.pth")
    assert isinstance(loaded, ConvVAE)
    assert torch.equal(loaded.sample(2, seed=0), model.sample(2, seed=0))


def test_likelihood_of_data_drops_when_trained():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4)
    gradient = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    images = gradient * torch.rand(32, 1, 1, 1)  # brightness ramps: one latent factor
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        reconstruction, kl = model(model.prepare(images))
        loss = (reconstruction + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_causal_context_sees_only_earlier_pixels():
    torch.manual_seed(0)
    net = causal_context(3, 8)
    before = torch.rand(1, 3, 12, 12)
    after = before.clone()
    after[:, :, 5, 7] += 1  # change one pixel
    changed = (net(before) - net(after)).abs().sum(1)[0] > 0  # (12, 12)
    raster = torch.arange(144).view(12, 12)
    assert not changed[raster <= 5 * 12 + 7].any()  # that pixel and all before it: untouched
    assert changed[5, 8] and changed[6, 7]  # its right and lower neighbours see it


def test_vae_with_causal_context_trains_and_samples():
    torch.manual_seed(0)
    model = ConvVAE((3, 32, 32), latent_dim=4, width=8, context=4)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    reconstruction, kl = model(model.prepare(images))
    (reconstruction + kl).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    samples = model.eval().sample(2, noise=True, seed=0)
    assert samples.shape == (2, 3, 32, 32) and samples.min() >= 0 and samples.max() <= 1
    # decoding pixel by pixel gives what the likelihood predicts from the finished image
    z = torch.randn(2, 4)
    with torch.no_grad():
        x = model.decode(z) * 2 - 1
        assert torch.allclose(model.draw(*model.likelihood(z, x), noise=False), x, atol=1e-5)
