"""Variational autoencoder: a Gaussian posterior q(z|x), a standard normal prior and a
discretised logistic likelihood, trained on the (beta-weighted) negative ELBO."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentlab.checkpoint import load, model_record
from latentlab.config import Config
from latentlab.data import ImageData
from latentlab.errors import UserError
from latentlab.experiments import autoencoder, shared
from latentlab.files import save_atomic
from latentlab.losses import beta_vae_loss, bits_per_dim, negative_elbo
from latentlab.metrics.images import reconstruction_metrics, reconstructions
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.models import VAES, Autoencoder, VariationalAutoencoder, resolve_family
from latentlab.plots import plot_image_rows, plot_interpolations
from latentlab.training import Steps, TrainResult, fit
from latentlab.training.schedule import KLWarmup, kl_warmup


def build(config: Config, image_shape: tuple[int, int, int]) -> VariationalAutoencoder:
    encoder = resolve_family(VAES, config.encoder, image_shape, "the VAE")
    torch.manual_seed(config.seed)
    return VAES[encoder](image_shape, latent_dim=config.latent_dim)


class ElboStep:
    """train_step and eval_step: mean(-log p(x|z) + w * KL), where w follows the KL warm-up
    in training and is beta in evaluation. Logs the two terms (nats per image) and the
    negative ELBO in bits/dim."""

    def __init__(self, warmup: KLWarmup) -> None:
        self.warmup = warmup

    def __call__(self, model: VariationalAutoencoder, images: Tensor,
                 labels: Tensor) -> dict[str, Tensor]:
        weight = self.warmup.step() if model.training else self.warmup.beta
        reconstruction, kl = model(images)
        nll = negative_elbo(reconstruction, kl).detach()
        return {"loss": beta_vae_loss(reconstruction, kl, weight),
                "reconstruction": reconstruction.detach().mean(), "kl": kl.detach().mean(),
                "bits_per_dim": bits_per_dim(nll, model.dims()).mean()}


def train(model: VariationalAutoencoder, config: Config, data: ImageData,
          resume: bool) -> TrainResult:
    """Train on the negative ELBO, the KL weight warming up as --kl-warmup-epochs says."""
    job = shared.job(config, data, resume)
    step = ElboStep(kl_warmup(config, len(data.train_labels), job.checkpoint, resume))
    return shared.train(model, job, Steps(step, step))


def plain_autoencoder(config: Config, data: ImageData, folder: Path) -> Autoencoder:
    """The plain autoencoder the VAE is compared with: <out>/autoencoder/autoencoder_model.pth
    when it was trained on the same dataset with the same latent size, else one trained here
    with the VAE's settings and saved as folder/plain_autoencoder_model.pth."""
    for path in (Path(config.out) / "autoencoder" / "autoencoder_model.pth",
                 folder / "plain_autoencoder_model.pth"):
        if path.is_file():
            try:
                model = load(path)
            except UserError:
                continue
            if (isinstance(model, Autoencoder) and model.config.get("dataset") == config.dataset
                    and model.hparams().get("image_shape") == list(data.image_shape)
                    and model.hparams().get("latent_dim") == config.latent_dim):
                print(f"comparing with the plain autoencoder in {path}")
                return model
    ae_config = replace(config, experiment="autoencoder")
    model = autoencoder.build(ae_config, data.image_shape)
    print(f"training a plain autoencoder with the same settings for comparison "
          f"({type(model).__name__})")
    checkpoint = folder / "plain_autoencoder_checkpoint.pth"
    job = replace(shared.job(ae_config, data, resume=False), checkpoint=checkpoint)
    step = autoencoder.reconstruction_step
    fit(model, job, Steps(step, step))  # chosen on the validation split, as every run
    checkpoint.unlink(missing_ok=True)
    save_atomic(model_record(model, ae_config.to_dict(), class_names=data.class_names),
                folder / "plain_autoencoder_model.pth")
    return model


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    data = shared.load_data(config)
    model = build(config, data.image_shape)
    result = train(model, config, data, resume)
    metrics, _, _ = shared.evaluate_embeddings(model, data, config, "vae", "VAE posterior means")
    metrics.update(elbo_metrics(model, data.test_images, config.seed))
    metrics.update(reconstruction_metrics(reconstructions(model, data.test_images),
                                          data.test_images.float() / 255))
    run_dir = config.run_dir
    samples = model.sample(32, seed=config.seed).cpu()
    drawn = model.sample(8, noise=True, seed=config.seed).cpu()
    plot_image_rows([samples[i: i + 8] for i in range(0, 32, 8)] + [drawn],
                    ["mean of p(x|z)"] * 4 + ["draw from p(x|z)"], run_dir / "vae_samples.png",
                    f"VAE samples: z ~ N(0, I) decoded (beta {config.beta:g}, test "
                    f"{metrics['test_bits_per_dim']:.2f} bits/dim)")
    plain = plain_autoencoder(config, data, run_dir).to(model.device)
    plot_interpolations(model, plain, data, run_dir / "vae_interpolations.png")
    print(f"test ELBO {metrics['test_elbo']:.1f} nats ({metrics['test_bits_per_dim']:.3f} "
          f"bits/dim), KL {metrics['test_kl']:.1f} nats, {metrics['active_units']} of "
          f"{config.latent_dim} latent units active")
    return shared.finish(model, config, data, result, "vae", metrics,
                         loss_keys=("reconstruction", "kl", "bits_per_dim"),
                         title="VAE: reconstruction -log p(x|z) and KL (nats per image), "
                               "negative ELBO (bits/dim)")
