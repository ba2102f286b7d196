"""The steps every experiment shares: load data, train, evaluate embeddings, write results."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latentlab
from latentlab import distributed, tensorboard_curves, training
from latentlab.checkpoint import model_record
from latentlab.config import Config
from latentlab.data import ImageData
from latentlab.data.splits import training_data
from latentlab.errors import UserError
from latentlab.files import save_atomic, save_npz_atomic, write_json_atomic
from latentlab.metrics.embeddings import embed_all, embedding_metrics, subsample, tsne_2d
from latentlab.models import ImageModel
from latentlab.plots import plot_embedding_map, plot_losses
from latentlab.training import Hooks, Job, Steps, TrainResult, pick_device


def code_version() -> str:
    """latentlab's version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{latentlab.__version__}+{commit}" if commit else latentlab.__version__


def augmentation_name(config: Config, image_shape: tuple[int, int, int]) -> str:
    """What --augmentation auto means: SimCLR's recipe for simclr; for separators, each
    source mirrored left-right on its own (four exact mixtures per pair, which slows the
    overfitting of long runs), and on the 1,000 images of the assignment protocol, where
    flips alone still overfit, shifted too (benchmarks/RESULTS.md); flips and shifts for
    other colour images; none for grey."""
    if config.augmentation != "auto":
        return config.augmentation
    if config.experiment == "simclr":
        return "simclr"
    if config.experiment == "separator":
        return "shifts" if config.protocol == "assignment" else "flips"
    return "light" if image_shape[0] == 3 else "none"


def load_data(config: Config) -> ImageData:
    data = training_data(config)
    assert data.val_labels is not None
    print(f"{data.name}: {len(data.train_labels):,} training, {len(data.val_labels):,} "
          f"validation and {len(data.test_labels):,} test images of "
          f"{'x'.join(map(str, data.image_shape))}, {len(data.class_names)} classes "
          f"({data.source})")
    return data


def start_run(config: Config) -> Path:
    """Create the results folder and record the resolved config and code version in it."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"config": config.to_dict(), "code_version": code_version()},
                      run_dir / "config.json")
    if config.tensorboard:
        tensorboard_curves.warn_if_unavailable()
    return run_dir


def job(config: Config, data: ImageData, resume: bool) -> Job:
    """A run's training and validation splits, and its checkpoint in its results folder."""
    assert data.val_images is not None and data.val_labels is not None
    return Job(config, data.epoch_images(),
               (data.val_images, data.val_labels), config.run_dir / "checkpoint.pth", resume)


def train(model: ImageModel, job: Job, steps: Steps, hooks: Hooks | None = None,
          note: str = "") -> TrainResult:
    """Record the run and train it with the shared loop. Under torchrun every process
    trains, then the others leave (distributed.WorkerFinished): evaluation and every file
    that follows are the first process's work."""
    config = job.config
    torch.manual_seed(config.seed)
    if distributed.is_main():
        start_run(config)
        print(f"training {type(model).__name__} ({num_parameters(model):,} parameters) on "
              f"{pick_device(config.device)}{note}; results in {config.run_dir}/")
    result = training.fit(model, job, steps, hooks)
    if not distributed.is_main():
        raise distributed.WorkerFinished
    return result


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def evaluate_embeddings(model: ImageModel, data: ImageData, config: Config, name: str,
                        title: str) -> tuple[dict[str, float], np.ndarray, torch.Tensor]:
    """Embed both splits, compute the shared metrics, draw the t-SNE map.

    Returns (metrics, t-SNE points, indices of the test images they show)."""
    started = time.perf_counter()
    bank_images, bank_labels = data.bank()  # each training image once
    train_embeddings = embed_all(model, bank_images)
    test_embeddings = embed_all(model, data.test_images)
    metrics = embedding_metrics(train_embeddings, bank_labels, test_embeddings,
                                data.test_labels, seed=config.seed)
    shown = subsample(len(test_embeddings), config.tsne_points, config.seed)
    points = tsne_2d(test_embeddings[shown], seed=config.seed)
    plot_embedding_map(points, data.test_labels[shown], data.class_names,
                       config.run_dir / f"{name}_embeddings.png",
                       f"{title}: t-SNE of {len(shown):,} test embeddings\n"
                       f"kNN accuracy {metrics['knn_accuracy']:.3f}, "
                       f"linear probe {metrics['linear_probe_accuracy']:.3f}")
    save_npz_atomic(config.run_dir / "test_embeddings.npz", embeddings=test_embeddings.numpy(),
                    labels=data.test_labels.numpy(), tsne=points, tsne_index=shown.numpy())
    print(f"evaluated embeddings in {time.perf_counter() - started:.1f}s")
    return metrics, points, shown


def finish(model: ImageModel, config: Config, data: ImageData, result: TrainResult, name: str,
           metrics: dict[str, Any], loss_keys: tuple[str, ...] = ("loss",),
           title: str = "", model_name: str | None = None) -> dict[str, Any]:
    """Write the loss plot, model file (<model_name or name>_model.pth) and metrics.json;
    return the metrics."""
    run_dir = config.run_dir
    plot_losses(result.history, run_dir / f"{name}_loss.png", title or f"{name} loss",
                keys=loss_keys)
    metrics = {**metrics, "dataset": data.name, "epochs": len(result.history),
               "train_seconds": round(result.train_seconds, 2),
               "images_per_second": round(sum(h.get("images_per_second", 0.0)
                                              for h in result.history)
                                          / max(1, len(result.history)), 1),
               "device": str(pick_device(config.device)), "num_parameters": num_parameters(model),
               "stopped_by_time_budget": result.stopped_early}
    save_atomic(model_record(model, config.to_dict(), class_names=data.class_names,
                             metrics=metrics), run_dir / f"{model_name or name}_model.pth")
    write_json_atomic(metrics, run_dir / "metrics.json")
    write_json_atomic(result.history, run_dir / "history.json")
    if config.tensorboard:
        tensorboard_curves.write_curves(result.history, run_dir / "tensorboard")
    return metrics


def check_crop_fits(config: Config, image_shape: tuple[int, int, int]) -> None:
    if config.crop > min(image_shape[1:]):
        raise UserError(f"--crop {config.crop} is larger than the {image_shape[1]}x"
                        f"{image_shape[2]} images; choose a smaller window or 0")
