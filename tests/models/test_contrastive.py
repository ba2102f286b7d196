"""Every contrastive model: unit-length embeddings, no NaN, a gradient for every trained
parameter; airbench's whitening layer."""

import pytest
import torch

from latentlab.losses import margin_contrastive_loss, supcon_loss
from latentlab.models import CONTRASTIVE_MODELS, MODELS, AirbenchEncoder, ResNetEncoder

SMALL = {"mlp": {}, "conv": {"width": 4}, "resnet": {"width": 4}, "airbench": {"width": 4}}


@pytest.mark.parametrize("encoder", sorted(CONTRASTIVE_MODELS))
@pytest.mark.parametrize("projection_dim", [0, 16])
@pytest.mark.parametrize("image_shape", [(1, 8, 8), (3, 32, 32)])
def test_contrastive_model_trains(encoder, projection_dim, image_shape):
    torch.manual_seed(0)
    model = CONTRASTIVE_MODELS[encoder](image_shape, latent_dim=6, projection_dim=projection_dim,
                                        **SMALL[encoder])
    assert type(model).__name__ in MODELS  # registered: latentlab.load can rebuild it
    x = model.prepare(torch.rand(8, *image_shape), model.input_size())
    z = model(x)
    assert z.shape == (8, 6) and torch.allclose(z.norm(dim=1), torch.ones(8), atol=1e-5)
    if projection_dim:
        p = model.project(x)
        assert p.shape == (8, projection_dim)
        loss = supcon_loss(p.view(4, 2, -1), temperature=0.5)
    else:
        loss = margin_contrastive_loss(z[:4], z[4:], torch.tensor([True, False, True, False]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # airbench's whitening weights stay as fitted
            assert name.endswith("whiten.weight") and parameter.grad is None
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    embedded = model.eval().embed(torch.rand(3, *image_shape))
    assert embedded.shape == (3, 6) and not embedded.requires_grad


def test_resnet_encoder_accepts_smaller_crops():
    encoder = ResNetEncoder(3, width=4)
    assert encoder(torch.rand(2, 3, 24, 24)).shape == (2, 32)


def test_airbench_whitening_gives_patches_zero_mean_and_unit_covariance():
    torch.manual_seed(0)
    base = torch.rand(64, 1, 16, 16)  # strongly correlated channels and neighbours
    images = torch.cat([base, 0.5 * base + 0.1 * torch.rand(64, 1, 16, 16),
                        torch.rand(64, 1, 16, 16)], dim=1)
    encoder = AirbenchEncoder(3, width=4)
    encoder.fit_whitening(images, eps=1e-8)
    out = encoder.whiten(images)  # 2x2 patches -> 12 directions and their negatives
    assert out.shape == (64, 24, 15, 15)
    assert torch.allclose(out[:, 12:], -out[:, :12], atol=1e-5)
    flat = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    assert flat.mean(0).abs().max() < 1e-3
    assert torch.allclose(flat.T @ flat / len(flat), torch.eye(12, dtype=torch.double),
                          atol=1e-2)
    assert encoder(torch.rand(2, 3, 24, 24)).shape == (2, 16)  # crops too
