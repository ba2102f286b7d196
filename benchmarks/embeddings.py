"""Embedding benchmark: every method trained on CIFAR-10 (JPEG copy) and Fashion-MNIST
within a time budget, evaluated on the test set.

    python benchmarks/embeddings.py --minutes 30

prints a table (method, dataset, epochs, wall time, kNN accuracy, linear probe accuracy,
pair AUC, the raw-pixel kNN floor beside the autoencoder, the target) and writes
benchmarks/results/embeddings.json; run folders go under benchmarks/runs/. The
learning-rate schedule is compressed to fit --minutes of training (Config.time_budget);
evaluation (kNN, linear probe, t-SNE) comes on top of it."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentlab.config import Config
from latentlab.evaluation import pair_distances, pair_metrics, raw_pixel_knn_accuracy
from latentlab.experiments import EXPERIMENTS
from latentlab.experiments.shared import load_data

ROOT = Path(__file__).resolve().parent
CIFAR = ROOT.parent / ".." / "shared" / "datasets" / "cifar10-jpeg.zip"
DATASETS = {"cifar10": f"folder:{CIFAR}", "fashion-mnist": "fashion-mnist"}
TITLES = {"cifar10": "CIFAR-10 (JPEG copy)", "fashion-mnist": "Fashion-MNIST"}
METHODS = ["autoencoder", "contrastive", "supcon", "simclr"]
# kNN targets of the issue; "supervised" is whichever of contrastive/supcon does best
TARGETS = {("cifar10", "supervised"): 0.90, ("cifar10", "simclr"): 0.75,
           ("fashion-mnist", "supervised"): 0.94}

# Per-method recipe; each line says why.
RECIPES: dict[str, dict[str, Any]] = {
    # the conv autoencoder (the default for colour), wide latent for a fair kNN comparison
    "autoencoder": {"encoder": "auto"},
    # small ResNet-9; flips and 4-pixel shifts converge fastest in a short budget
    "contrastive": {"encoder": "resnet", "augmentation": "light", "margin": 1.0},
    "supcon": {"encoder": "resnet", "augmentation": "light", "temperature": 0.1},
    # SimCLR needs its strong crops and colour jitter; 0.2 suits batches of a few hundred
    "simclr": {"encoder": "resnet", "augmentation": "simclr", "temperature": 0.2},
}


def run_one(method: str, dataset: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    recipe = dict(RECIPES[method])
    if method != "autoencoder":
        recipe["width"] = args.width
    # epochs only bound the run: the time budget ends it and sets the schedule's length
    config = Config(experiment=method, dataset=DATASETS[dataset], latent_dim=args.latent_dim,
                    epochs=args.max_epochs, warmup_epochs=args.max_epochs * 0.03,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    time_budget=args.minutes, seed=seed, device=args.device,
                    train_limit=args.train_limit, test_limit=args.test_limit,
                    tsne_points=args.tsne_points,
                    out=str(ROOT / "runs" / dataset / f"seed{seed}"),
                    **recipe).validate()
    started = time.perf_counter()
    metrics = EXPERIMENTS[method](config, False)
    if "pair_auc" not in metrics:  # the autoencoder: same pair metric on its saved embeddings
        saved = np.load(config.run_dir / "test_embeddings.npz")
        metrics.update(pair_metrics(*pair_distances(torch.from_numpy(saved["embeddings"]),
                                                    torch.from_numpy(saved["labels"]), seed=seed)))
    return {**metrics, "wall_seconds": round(time.perf_counter() - started, 1),
            "settings": {k: v for k, v in config.to_dict().items()
                         if k in ("encoder", "width", "latent_dim", "batch_size", "learning_rate",
                                  "augmentation", "temperature", "margin", "time_budget")}}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="training budget per run")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", type=int, default=1, help="runs per cell (mean ± std)")
    parser.add_argument("--width", type=int, default=16, help="ResNet width (features: 8x)")
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-limit", type=int, help="quick checks only")
    parser.add_argument("--test-limit", type=int, help="quick checks only")
    parser.add_argument("--tsne-points", type=int, default=2000)
    parser.add_argument("--json", default=str(ROOT / "results" / "embeddings.json"),
                        help="where the table is written as JSON")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        floor = None
        if "autoencoder" in args.methods:
            data = load_data(Config(dataset=DATASETS[dataset], train_limit=args.train_limit,
                                    test_limit=args.test_limit))
            floor = raw_pixel_knn_accuracy(data.train_images, data.train_labels,
                                           data.test_images, data.test_labels)
        for method in args.methods:
            runs = [run_one(method, dataset, seed, args) for seed in range(args.seeds)]
            row = {"method": method, "dataset": TITLES[dataset], "runs": runs}
            for key in ("knn_accuracy", "linear_probe_accuracy", "pair_auc"):
                row[key] = [r[key] for r in runs]
            row["epochs"] = [r["epochs"] for r in runs]
            row["train_seconds"] = [r["train_seconds"] for r in runs]
            row["wall_seconds"] = [r["wall_seconds"] for r in runs]
            if method == "autoencoder":
                row["raw_pixel_knn_accuracy"] = floor
            group = "supervised" if method in ("contrastive", "supcon") else method
            row["knn_target"] = TARGETS.get((dataset, group))
            rows.append(row)
            print_table(rows)
            write(rows, args)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'method':<12}{'dataset':<22}{'epochs':>7}{'train s':>9}{'wall s':>9}"
              f"{'kNN':>18}{'linear probe':>18}{'pair AUC':>18}{'raw-pixel kNN':>15}"
              f"{'kNN target':>12}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        floor = f"{r['raw_pixel_knn_accuracy']:.4f}" if r.get("raw_pixel_knn_accuracy") else ""
        target = f">= {r['knn_target']:.2f}" if r["knn_target"] else ""
        print(f"{r['method']:<12}{r['dataset']:<22}{statistics.mean(r['epochs']):>7.1f}"
              f"{statistics.mean(r['train_seconds']):>9.0f}{statistics.mean(r['wall_seconds']):>9.0f}"
              f"{mean_std(r['knn_accuracy']):>18}{mean_std(r['linear_probe_accuracy']):>18}"
              f"{mean_std(r['pair_auc']):>18}{floor:>15}{target:>12}", flush=True)


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "torch": torch.__version__}
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine,
                               "arguments": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
