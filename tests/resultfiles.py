"""Results folders as training writes them, made in seconds (untrained models, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from latentlab.config import Config
from latentlab.experiments import shared
from latentlab.metrics.embeddings import embed_all, embedding_metrics, subsample
from latentlab.models import MLPAutoencoder
from latentlab.plots import plot_embedding_map, save_figure
from latentlab.training import TrainResult


def embedding_run(out: Path, experiment: str, latent_dim: int, seed: int,
                  test_limit: int | None = None) -> Path:
    """out/<experiment>/ with every file an embedding experiment writes, for digits."""
    config = Config(experiment=experiment, dataset="digits", latent_dim=latent_dim, seed=seed,
                    epochs=2, test_limit=test_limit, out=str(out)).validate()
    data = shared.load_data(config)
    torch.manual_seed(seed)
    model = MLPAutoencoder(data.image_shape, latent_dim=latent_dim)
    run_dir = shared.start_run(config)
    # as shared.evaluate_embeddings, with a PCA map instead of the slower t-SNE
    train, test = embed_all(model, data.train_images), embed_all(model, data.test_images)
    metrics = embedding_metrics(train, data.train_labels, test, data.test_labels, seed=seed)
    shown = subsample(len(test), config.tsne_points, seed)
    centred = test[shown].double() - test[shown].double().mean(0)
    points = (centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T).numpy()
    plot_embedding_map(points, data.test_labels[shown], data.class_names,
                       run_dir / f"{experiment}_embeddings.png", f"{experiment} map")
    np.savez(run_dir / "test_embeddings.npz", embeddings=test.numpy(),
             labels=data.test_labels.numpy(), tsne=points, tsne_index=shown.numpy())
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e} for e in (1, 2)]
    shared.finish(model, config, data, TrainResult(history, 1.5, False), experiment, metrics)
    return config.run_dir


def separation_run(out: Path, model: str, psnr: float) -> Path:
    """out/separation/<model>/: metrics and a figure, but no embeddings."""
    folder = out / "separation" / model
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(
        {"separation_psnr": psnr, "separation_mse": 10 ** (-psnr / 10), "epochs": 3,
         "stopped_by_time_budget": model == "vae"}))
    (folder / "config.json").write_text(json.dumps(
        {"config": {"experiment": "separator", "model": model, "dataset": "digits"},
         "code_version": "0.1.0"}))
    figure, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(figure, folder / f"separator_{model}_examples.png")
    return folder


def synthetic_run(out: Path, name: str, n: int, dim: int = 16, classes: int = 10,
                  seed: int = 0) -> Path:
    """out/<name>/ with n clustered test embeddings and a map of all of them; its dataset
    cannot be loaded, so the explorer shows it without images."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(0, 4, (classes, dim))
    embeddings = (centres[labels] + rng.normal(0, 1, (n, dim))).astype(np.float32)
    folder = out / name
    folder.mkdir(parents=True)
    np.savez(folder / "test_embeddings.npz", embeddings=embeddings, labels=labels,
             tsne=embeddings[:, :2] + rng.normal(0, 0.1, (n, 2)), tsne_index=np.arange(n))
    (folder / "metrics.json").write_text(json.dumps({"knn_accuracy": 0.9}))
    (folder / "config.json").write_text(json.dumps(
        {"config": {"experiment": name, "dataset": "folder:/nonexistent"}, "code_version": "x"}))
    return folder
