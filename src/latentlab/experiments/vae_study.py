"""`latentlab vae-study`: the same VAE trained with several KL weights (beta), and what beta
does to reconstruction, KL, active units, kNN accuracy and samples, in one figure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from latentlab.config import Config
from latentlab.experiments import shared, vae
from latentlab.experiments.shared import code_version
from latentlab.files import write_json_atomic
from latentlab.metrics.embeddings import embed_all, knn_accuracy
from latentlab.metrics.images import reconstruction_metrics, reconstructions
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.plots import image_grid, save_figure

DEFAULT_BETAS = (0.1, 0.5, 1.0, 4.0)


def run(config: Config, betas: tuple[float, ...] = DEFAULT_BETAS,
        resume: bool = False) -> dict[str, Any]:
    data = shared.load_data(config)
    folder = Path(config.out) / "vae_study"
    folder.mkdir(parents=True, exist_ok=True)
    prior = torch.randn(8, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
    runs, sample_rows = [], []
    for beta in betas:
        print(f"--- beta {beta:g}")
        run_config = replace(config, beta=beta, out=str(folder / f"beta_{beta:g}"))
        model = vae.build(run_config, data.image_shape)
        result = vae.train(model, run_config, data, resume)
        metrics = elbo_metrics(model, data.test_images, config.seed)
        metrics.update(reconstruction_metrics(reconstructions(model, data.test_images),
                                              data.test_images.float() / 255))
        bank_images, bank_labels = data.bank()
        metrics["knn_accuracy"] = knn_accuracy(embed_all(model, bank_images), bank_labels,
                                               embed_all(model, data.test_images),
                                               data.test_labels)
        runs.append({"beta": beta, "train_seconds": round(result.train_seconds, 2), **metrics})
        with torch.no_grad():
            sample_rows.append(model.to_image_size(model.decode(prior.to(model.device))).cpu())
    plain = vae.plain_autoencoder(config, data, folder)
    with torch.no_grad():
        sample_rows.append(plain.decode(prior.to(plain.device)).cpu())
    plot_study(runs, sample_rows, folder / "vae_study.png", data.name)
    summary = {"dataset": data.name, "betas": list(betas), "runs": runs,
               "config": config.to_dict(), "code_version": code_version()}
    write_json_atomic(summary, folder / "vae_study.json")
    print(f"results written to {folder}/")
    return summary


def plot_study(runs: list[dict[str, Any]], sample_rows: list[torch.Tensor], path: Path,
               dataset: str) -> None:
    """Four curves against beta above rows of prior samples (one per beta, then the plain
    autoencoder decoding the same z)."""
    betas = [r["beta"] for r in runs]
    panels = [("reconstruction_mse", "reconstruction error (MSE)"),
              ("test_kl", "KL(q(z|x) || p(z)) (nats)"),
              ("active_units", f"active units (of {runs[0]['latent_dim']})"),
              ("knn_accuracy", "kNN accuracy (posterior means)")]
    figure = plt.figure(figsize=(16, 4 + 0.9 * len(sample_rows)), layout="constrained")
    grid = figure.add_gridspec(2, 4, height_ratios=[3, 0.9 * len(sample_rows)])
    for i, (key, label) in enumerate(panels):
        ax = figure.add_subplot(grid[0, i])
        ax.plot(betas, [r[key] for r in runs], "-o")
        ax.set_xscale("log")
        ax.set_xlabel("beta (weight of the KL term)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    ax = figure.add_subplot(grid[1, :])
    ax.imshow(image_grid(sample_rows), interpolation="nearest")
    height = ax.get_ylim()[0] / len(sample_rows)
    ax.set_yticks([height * (i + 0.5) for i in range(len(sample_rows))],
                  [f"VAE beta {b:g}" for b in betas] + ["plain autoencoder"])
    ax.set_xticks([])
    ax.set_title("the same z ~ N(0, I) decoded by each model: the VAE's prior is where its "
                 "decoder was trained, the plain autoencoder's is not")
    figure.suptitle(f"What beta does ({dataset})")
    save_figure(figure, path)
