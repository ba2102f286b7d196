"""The VAE models: shapes, ranges, gradients, and loading a saved one."""

import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record, save_atomic
from latentlab.models import MLPVAE, VAES, ConvVAE


@pytest.mark.parametrize("cls,shape", [(MLPVAE, (1, 8, 8)), (ConvVAE, (3, 32, 32)),
                                       (ConvVAE, (1, 28, 28))])
def test_vae_shapes_ranges_and_gradients(cls, shape):
    torch.manual_seed(0)
    model = cls(shape, latent_dim=6)
    images = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    x = model.prepare(images, model.input_size())
    reconstruction, kl = model(x)
    assert reconstruction.shape == kl.shape == (4,)
    assert torch.isfinite(reconstruction).all() and (kl >= 0).all()
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
