"""Variational autoencoder: a Gaussian posterior q(z|x), a standard normal prior and a
discretised logistic likelihood, trained on the (beta-weighted) negative ELBO."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentlab.checkpoint import load, model_record, read_checkpoint
from latentlab.config import Config
from latentlab.data import ImageData
from latentlab.errors import UserError
from latentlab.evaluation import active_units, reconstruction_metrics
from latentlab.experiments import autoencoder, shared
from latentlab.files import save_atomic
from latentlab.losses import (
    beta_vae_loss,
    bits_per_dim,
    gaussian_kl,
    negative_elbo,
    reparameterize,
)
from latentlab.models import VAES, Autoencoder, VariationalAutoencoder, resolve_family
from latentlab.plots import plot_image_rows
from latentlab.training import fit, steps_per_epoch


def build(config: Config, image_shape: tuple[int, int, int]) -> VariationalAutoencoder:
    encoder = resolve_family(VAES, config.encoder, image_shape, "the VAE")
    torch.manual_seed(config.seed)
    return VAES[encoder](image_shape, latent_dim=config.latent_dim)


class ElboStep:
    """train_step and eval_step: mean(-log p(x|z) + w * KL), where w ramps linearly from 0 to
    beta over the first kl_warmup_epochs of training (Bowman et al. 2016) and is beta in
    evaluation. Logs the two terms (nats per image) and the negative ELBO in bits/dim."""

    def __init__(self, beta: float, warmup_steps: int, completed_steps: int = 0) -> None:
        self.beta, self.warmup_steps, self.step = beta, warmup_steps, completed_steps

    def kl_weight(self) -> float:
        if self.step >= self.warmup_steps:
            return self.beta
        return self.beta * self.step / self.warmup_steps

    def __call__(self, model: VariationalAutoencoder, images: Tensor,
                 labels: Tensor) -> dict[str, Tensor]:
        weight = self.kl_weight() if model.training else self.beta
        if model.training:
            self.step += 1
        reconstruction, kl = model(images)
        nll = negative_elbo(reconstruction, kl).detach()
        return {"loss": beta_vae_loss(reconstruction, kl, weight),
                "reconstruction": reconstruction.detach().mean(), "kl": kl.detach().mean(),
                "bits_per_dim": bits_per_dim(nll, model.dims()).mean()}


def elbo_step(config: Config, n_train: int, resume: bool = False) -> ElboStep:
    """An ElboStep that knows the run's length (and, on --resume, how far it got)."""
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    done = 0
    checkpoint = config.run_dir / "checkpoint.pth"
    if resume and checkpoint.is_file():
        state = read_checkpoint(checkpoint, "training checkpoint")
        done = int(state.get("epoch", 0)) * per_epoch + int(state.get("step", 0))
    return ElboStep(config.beta, round(config.kl_warmup_epochs * per_epoch), done)


@torch.no_grad()
def elbo_metrics(model: VariationalAutoencoder, images: Tensor, seed: int = 0,
                 batch_size: int = 500) -> dict[str, float]:
    """Test-set ELBO terms (nats per image, one seeded z per image), bits/dim, active units."""
    model.eval()
    torch.manual_seed(seed)
    reconstructions, kls, means = [], [], []
    for start in range(0, len(images), batch_size):
        x = model.prepare(images[start: start + batch_size], model.input_size())
        mean, log_variance = model.posterior(x)
        z = reparameterize(mean, log_variance)
        reconstructions.append(model.reconstruction_nll(x, z).cpu())
        kls.append(gaussian_kl(mean, log_variance).cpu())
        means.append(mean.cpu())
    reconstruction, kl = torch.cat(reconstructions), torch.cat(kls)
    nll = negative_elbo(reconstruction, kl)
    return {"test_elbo": -float(nll.mean()),
            "test_reconstruction_nll": float(reconstruction.mean()),
            "test_kl": float(kl.mean()),
            "test_bits_per_dim": float(bits_per_dim(nll, model.dims()).mean()),
            "active_units": active_units(torch.cat(means)),
            "latent_dim": model.latent_dim}


@torch.no_grad()
def reconstructions(model: Any, images: Tensor, batch_size: int = 500) -> Tensor:
    return torch.cat([model.reconstruct(images[i: i + batch_size]).cpu()
                      for i in range(0, len(images), batch_size)])


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
    fit(model, ae_config, data.train_images, data.train_labels, data.test_images,
        data.test_labels, autoencoder.reconstruction_step, autoencoder.reconstruction_step,
        checkpoint)
    checkpoint.unlink(missing_ok=True)
    save_atomic(model_record(model, ae_config.to_dict(), class_names=data.class_names),
                folder / "plain_autoencoder_model.pth")
    return model


@torch.no_grad()
def interpolate(model: Any, first: Tensor, second: Tensor, steps: int = 8) -> Tensor:
    """Decode the straight line between two images' latents: (steps, C, h, w) in [0, 1]."""
    ends = model.embed(torch.stack([first, second]))  # (2, D)
    t = torch.linspace(0, 1, steps, device=ends.device)[:, None]
    return model.decode((1 - t) * ends[0] + t * ends[1]).cpu()


def plot_interpolations(vae: VariationalAutoencoder, plain: Autoencoder, data: ImageData,
                        path: Path, pairs: int = 4) -> None:
    """Rows of VAE and autoencoder interpolations between test images of different classes."""
    first_of_class = {int(c): int((data.test_labels == c).nonzero()[0])
                      for c in data.test_labels.unique()}
    classes = sorted(first_of_class)
    rows, names = [], []
    for i in range(min(pairs, len(classes))):
        a, b = classes[i], classes[(i + 1) % len(classes)]
        first, second = data.test_images[first_of_class[a]], data.test_images[first_of_class[b]]
        label = f"{data.class_names[a]} -> {data.class_names[b]}"
        rows += [interpolate(vae, first, second), interpolate(plain, first, second)]
        names += [f"VAE {label}", f"autoencoder {label}"]
    plot_image_rows(rows, names, path, "Straight lines between two test images in latent "
                    "space, decoded (VAE: posterior means)")


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    data = shared.load_data(config)
    model = build(config, data.image_shape)
    step = elbo_step(config, len(data.train_labels), resume)
    result = shared.train(model, config, data, step, step, resume)
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
