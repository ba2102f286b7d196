"""`latentlab run`: the autoencoder and the margin contrastive model trained on one dataset
and compared side by side (the course assignment's main script)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentlab.checkpoint import read_checkpoint
from latentlab.config import Config
from latentlab.experiments import autoencoder, contrastive
from latentlab.files import write_json_atomic
from latentlab.metrics.embeddings import pair_distances, pair_metrics
from latentlab.plots import plot_distance_histograms, plot_embedding_maps

MODELS = {"autoencoder": ("Autoencoder", autoencoder.run),
          "contrastive": ("Margin contrastive", contrastive.run)}
DISTANCES = {"autoencoder": "Euclidean distance of autoencoder latents (unnormalised)",
             "contrastive": f"{contrastive.DISTANCE_LABEL} (the loss's distance)"}
COLUMNS = ["knn_accuracy", "linear_probe_accuracy", "silhouette", "between_within_ratio",
           "pair_auc", "epochs", "train_seconds"]


def compare(config: Config, resume: bool = False) -> dict[str, Any]:
    """Train both models with config's options; write embedding_comparison.png,
    distance_comparison.png and comparison.json under config.out; return
    {"dataset": name, "models": {model name: metrics}}."""
    results: dict[str, dict[str, Any]] = {}
    maps, panels = [], []
    for name, (title, run) in MODELS.items():
        model_config = dataclasses.replace(config, experiment=name).validate()
        print(f"--- {title}")
        metrics = run(model_config, resume)
        # the test embeddings and t-SNE map the experiment saved; same seed, same points shown
        saved = np.load(model_config.run_dir / "test_embeddings.npz")
        embeddings = torch.from_numpy(saved["embeddings"])
        labels = torch.from_numpy(saved["labels"])
        positive, negative = pair_distances(embeddings, labels, seed=config.seed)
        results[name] = {**metrics, **pair_metrics(positive, negative)}
        maps.append((saved["tsne"], labels[torch.from_numpy(saved["tsne_index"])],
                     f"{title}: kNN accuracy {results[name]['knn_accuracy']:.3f}"))
        panels.append({"title": f"{title} (pair AUC {results[name]['pair_auc']:.3f})",
                       "positive": positive, "negative": negative, "xlabel": DISTANCES[name],
                       "margin": config.margin if name == "contrastive" else None})
    record = read_checkpoint(model_config.run_dir / "contrastive_model.pth", "model")
    root = Path(config.out)
    dataset = results["contrastive"]["dataset"]
    plot_embedding_maps(maps, record.get("class_names", []), root / "embedding_comparison.png",
                        f"t-SNE of test embeddings on {dataset} (colours: classes)")
    plot_distance_histograms(panels, root / "distance_comparison.png",
                             f"Within-class versus between-class test-pair distances on {dataset}")
    comparison = {"dataset": dataset, "models": results}
    write_json_atomic(comparison, root / "comparison.json")
    return comparison


def format_table(comparison: dict[str, Any]) -> str:
    """The comparison as a fixed-width text table, one row per model."""
    widths = [max(len(c), 8) + 2 for c in COLUMNS]
    header = f"{'model':<13}" + "".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths))
    lines = [f"dataset: {comparison['dataset']}", header, "-" * len(header)]
    for name, metrics in comparison["models"].items():
        cells = "".join(f"{metrics[c]:>{w}.4f}" if isinstance(metrics[c], float)
                        else f"{metrics[c]:>{w}}" for c, w in zip(COLUMNS, widths))
        lines.append(f"{name:<13}{cells}")
    return "\n".join(lines)
