"""Every contrastive model: unit-length embeddings, no NaN, a gradient for every parameter."""

import pytest
import torch

from latentlab.losses import margin_contrastive_loss, supcon_loss
from latentlab.models import CONTRASTIVE_MODELS, MODELS, ResNetEncoder

SMALL = {"mlp": {}, "conv": {"width": 4}, "resnet": {"width": 4}}


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
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    embedded = model.eval().embed(torch.rand(3, *image_shape))
    assert embedded.shape == (3, 6) and not embedded.requires_grad


def test_resnet_encoder_accepts_smaller_crops():
    encoder = ResNetEncoder(3, width=4)
    assert encoder(torch.rand(2, 3, 24, 24)).shape == (2, 32)
