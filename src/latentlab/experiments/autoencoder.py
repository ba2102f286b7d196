"""Autoencoder embeddings: encoder -> latent -> decoder, trained to reconstruct (MSE)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentlab.config import Config
from latentlab.experiments import shared
from latentlab.metrics.embeddings import one_per_class
from latentlab.metrics.images import reconstruction_metrics, reconstructions
from latentlab.models import AUTOENCODERS, Autoencoder, resolve_family
from latentlab.plots import plot_image_rows
from latentlab.training import Steps


def reconstruction_step(model: Autoencoder, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
    return {"loss": F.mse_loss(model(images), images)}


def build(config: Config, image_shape: tuple[int, int, int]) -> Autoencoder:
    encoder = resolve_family(AUTOENCODERS, config.encoder, image_shape, "the autoencoder")
    torch.manual_seed(config.seed)
    return AUTOENCODERS[encoder](image_shape, latent_dim=config.latent_dim)


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    data = shared.load_data(config)
    model = build(config, data.image_shape)
    step = reconstruction_step
    result = shared.train(model, shared.job(config, data, resume), Steps(step, step))
    metrics, _, _ = shared.evaluate_embeddings(model, data, config, "autoencoder", "Autoencoder")
    test = data.test_images
    outputs = reconstructions(model, test)
    metrics.update(reconstruction_metrics(outputs, test.float() / 255))
    shown = one_per_class(data.test_labels, 12)
    plot_image_rows([test[shown].float() / 255, outputs[shown]],
                    ["original", "reconstruction"],
                    config.run_dir / "autoencoder_reconstructions.png",
                    "Autoencoder reconstructions "
                    f"(test PSNR {metrics['reconstruction_psnr']:.1f} dB)")
    return shared.finish(model, config, data, result, "autoencoder", metrics,
                         title="Autoencoder reconstruction loss (MSE)")
