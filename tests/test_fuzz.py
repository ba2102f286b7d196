"""No input to the command line or the image API ends in a traceback."""

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentlab import experiments
from latentlab.cli import main
from latentlab.errors import UserError
from latentlab.models import MLPAutoencoder

OPTIONS = ["--dataset", "--epochs", "--batch-size", "--latent-dim", "--learning-rate",
           "--device", "--encoder", "--seed", "--time-budget", "--train-limit", "--config",
           "--warmup-epochs", "--weight-decay", "--resume", "--out", "--bogus"]
VALUES = st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6).map(str),
                   st.floats(allow_nan=True).map(str),
                   st.sampled_from(["0", "-1", "1e9", "nan", "inf", "cuda:7", "folder:", "auto"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), VALUES), max_size=5))
def test_train_options_never_raise_a_traceback(pairs: list[tuple[str, str]]) -> None:
    calls: list[Any] = []
    original = experiments.EXPERIMENTS["autoencoder"]
    experiments.EXPERIMENTS["autoencoder"] = lambda config, resume: calls.append(config) or {}
    args = ["train", "autoencoder"] + [item for pair in pairs for item in pair]
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's usage errors exit with 2
        code = exit.code
    finally:
        experiments.EXPERIMENTS["autoencoder"] = original
    assert code in (0, 2)
    if code == 0:  # whatever was accepted is a valid configuration
        assert calls and calls[0].epochs >= 1 and calls[0].batch_size >= 1


SHAPES = st.lists(st.integers(0, 6), min_size=0, max_size=5)
DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, np.float16])


@pytest.fixture(scope="module")
def model() -> MLPAutoencoder:
    return MLPAutoencoder((3, 8, 8), latent_dim=4).eval()


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(shape=SHAPES, dtype=DTYPES, scale=st.sampled_from([1.0, 255.0, -1.0, float("nan")]),
       as_tensor=st.booleans())
def test_image_api_converts_or_refuses_clearly(model: MLPAutoencoder, shape: list[int],
                                               dtype: Any, scale: float, as_tensor: bool) -> None:
    with np.errstate(invalid="ignore"):  # NaN cast to integers is part of the fuzzing
        images: Any = (np.random.default_rng(0).random(shape) * scale).astype(dtype)
    if as_tensor:
        images = torch.from_numpy(np.ascontiguousarray(images))
    try:
        embedding = model.embed(images)
    except UserError:
        return
    assert embedding.shape[1] == 4 and torch.isfinite(embedding).all()
