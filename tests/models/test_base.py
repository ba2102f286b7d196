"""Every registered model: builds with defaults, gives no NaN, and trains every parameter."""

import pytest
import torch

from latentlab.models import AUTOENCODERS, CONTRASTIVE_MODELS, SEPARATORS, VAES
from latentlab.models.base import MODELS, family
from latentlab.models.separators import Separator


def outputs(result: object) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, tuple | list):
        return [t for item in result for t in outputs(item)]
    return []


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("image_shape", [(1, 8, 8), (3, 32, 32)])
def test_model_forward_has_no_nan_and_every_parameter_gets_a_gradient(
        name: str, image_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = MODELS[name](image_shape)
    images = model.prepare(torch.rand(4, *image_shape), model.input_size())
    results = outputs(model(images))
    assert results and all(torch.isfinite(t).all() for t in results)
    sum(t.float().square().mean() for t in results).backward()
    # a frozen parameter (airbench's fitted whitening) is meant to get none
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient reaches {missing}"
    if hasattr(model, "embed"):  # every model but the separators
        embedding = model.eval().embed(torch.rand(3, *image_shape))
        assert embedding.ndim == 2 and len(embedding) == 3


def test_every_registered_model_is_in_one_family_under_its_command_line_name() -> None:
    families = [AUTOENCODERS, VAES, CONTRASTIVE_MODELS, SEPARATORS]
    for name, cls in MODELS.items():
        assert sum(f.get(cls.cli_name) is cls for f in families) == 1, name
    assert sum(map(len, families)) == len(MODELS)
    assert list(SEPARATORS) == ["two-decoder-ae", "two-decoder-vae", "unet", "resunet"]
    assert family(Separator) == SEPARATORS
