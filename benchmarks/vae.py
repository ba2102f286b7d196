"""Benchmark: CIFAR-10 test bits/dim of the VAE's negative ELBO on real pixels after a fixed
budget of training time, next to the literature. Target: <= 4.0 bits/dim in 30 minutes.

    python benchmarks/vae.py --minutes 30
    python benchmarks/vae.py --minutes 30 --dataset folder:../shared/datasets/cifar10-jpeg.zip \
        --extra-train none          # the JPEG copy alone, as before: not real pixels

By default the test images are 1,017 official CIFAR-10 images (exact pixels, held out of
../shared/datasets/cifar10-official-5k.zip), the training set is the rest of them beside the
JPEG copy, less the twins of validation and test images, and each epoch is scored on the
validation split; the test split is scored once, at the end, on real pixels and on their
JPEG twins; the weights kept are those of the best validation epoch. `--save PATH` writes
that model, its scores inside, as a file `latentlab.load` and `latentlab evaluate` read
(how pretrained/cifar10_vae.pth was made: see the README). Only the real-pixel figure
stands beside published ones: the JPEG files hold less information than the official
pixels. Prints a table and writes benchmarks/results/vae/real-pixels.json. bits/dim =
-ELBO / (3072 ln 2), one z ~ q(z|x) per test image, with the discretised logistic
likelihood over 8-bit values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from latentlab.checkpoint import model_record
from latentlab.config import Config
from latentlab.data.splits import training_data
from latentlab.data.twins import read_twin_images
from latentlab.devices import cpu_name
from latentlab.experiments.shared import code_version, num_parameters
from latentlab.experiments.vae import ElboStep
from latentlab.files import save_atomic, write_json_atomic
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.models import ConvVAE
from latentlab.training import Hooks, Job, Steps, fit, pick_device
from latentlab.training.best import BestWeights
from latentlab.training.schedule import KLWarmup

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
OFFICIAL = DATASETS / "cifar10-official-5k.zip"
JPEG_COPY = DATASETS / "cifar10-jpeg.zip"
TARGET = 4.0
# Published test bits/dim on CIFAR-10 (official release; lower is better).
LITERATURE = [
    ("simple convolutional VAE (issue's anchor)", "4.5-5"),
    ("FLIF lossless codec (Hoogeboom et al. 2019)", "4.37"),
    ("NVAE, days on 8 GPUs (Vahdat and Kautz 2020)", "2.91"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per run")
    parser.add_argument("--seeds", type=int, default=1, help="runs with seeds 0..N-1")
    parser.add_argument("--dataset", default=f"folder:{OFFICIAL}",
                        help="its test split is scored (default: official CIFAR-10 pixels)")
    parser.add_argument("--extra-train", default=f"folder:{JPEG_COPY}",
                        help="more training images, less twins of held-out ones (none: off)")
    parser.add_argument("--oversample", type=int, default=13,
                        help="times each --dataset training image counts per epoch")
    parser.add_argument("--latent-dim", type=int, default=256)
    parser.add_argument("--width", type=int, default=32, help="ConvVAE channel width")
    parser.add_argument("--context", type=int, default=32,
                        help="width of the causal context network (0: factorised likelihood)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json",
                        default=str(ROOT / "benchmarks" / "results" / "vae" / "real-pixels.json"))
    parser.add_argument("--save", default=None,
                        help="also write the trained model here, its scores inside (one seed)")
    args = parser.parse_args()
    if args.save and args.seeds != 1:
        parser.error("--save keeps one model: give --seeds 1")

    extra = None if args.extra_train == "none" else args.extra_train
    name = ("CIFAR-10 (JPEG copy)" if "cifar10-jpeg" in args.dataset else
            "CIFAR-10 official pixels" if "official" in args.dataset else args.dataset)
    runs = []
    for seed in range(args.seeds):
        # Many epochs with a time budget: the cosine schedule ends when the budget does.
        config = Config(experiment="vae", dataset=args.dataset, latent_dim=args.latent_dim,
                        batch_size=args.batch_size, learning_rate=args.learning_rate,
                        epochs=1000, warmup_epochs=20, time_budget=args.minutes, seed=seed,
                        extra_train=extra, oversample=args.oversample if extra else 1,
                        train_limit=args.train_limit, test_limit=args.test_limit,
                        device=args.device).validate()
        data = training_data(config)
        assert data.val_images is not None and data.val_labels is not None
        train = data.epoch_images()  # --oversample's repeats, by index
        print(f"{name}: {len(data.train_labels):,} training ({len(train[1]):,} "
              f"an epoch with --oversample), {len(data.val_labels):,} validation, "
              f"{len(data.test_labels):,} test images")
        torch.manual_seed(seed)
        model = ConvVAE(data.image_shape, args.latent_dim, args.width, args.context)
        step = ElboStep(KLWarmup(1.0, 0, 1))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            job = Job(config, train,
                      (data.val_images, data.val_labels), Path(folder) / "checkpoint.pth")
            best = BestWeights(model, config, Path(folder) / "best.pth", resume=False,
                               key="val_bits_per_dim", lower_is_better=True)
            result = fit(model, job, Steps(step, step), Hooks(epoch_end=best))
            best.restore()
        metrics = elbo_metrics(model, data.test_images, seed)
        twins = read_twin_images(args.dataset, data.test_names)
        if twins is not None:  # the same test images as the JPEG copy holds them
            metrics["jpeg_twins_bits_per_dim"] = elbo_metrics(model, twins,
                                                              seed)["test_bits_per_dim"]
        runs.append({"seed": seed, **metrics, "epochs": len(result.history),
                     "epoch_images": len(train[1]),
                     "best_epoch": best.epoch, "best_val_bits_per_dim": best.score,
                     "steps": round(sum(h["images_per_second"] * h["seconds"]
                                        for h in result.history) / args.batch_size),
                     "train_seconds": round(result.train_seconds, 1),
                     "wall_seconds": round(time.perf_counter() - started, 1),
                     "history": result.history})
        twin_note = (f" ({metrics['jpeg_twins_bits_per_dim']:.3f} on their JPEG twins)"
                     if "jpeg_twins_bits_per_dim" in metrics else "")
        print(f"seed {seed}: {metrics['test_bits_per_dim']:.3f} bits/dim{twin_note} after "
              f"{len(result.history)} epochs (best on validation: {best.epoch})", flush=True)
        if args.save:
            save(model, config, data.class_names, runs[-1], name, args.save)

    scores = [r["test_bits_per_dim"] for r in runs]
    mean = statistics.mean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    ours = f"{mean:.3f} ± {std:.3f}" if len(scores) > 1 else f"{mean:.3f}"
    rows = [(f"latentlab ConvVAE, {args.minutes:g} min on {pick_device(args.device)}", ours),
            *LITERATURE, ("target", f"<= {TARGET}")]
    width = max(len(r[0]) for r in rows)
    print(f"\n{name} test bits/dim (negative ELBO)")
    print(f"{'model':<{width}}  bits/dim")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(f"target {'met' if mean <= TARGET else 'missed'}; active units "
          f"{statistics.mean(r['active_units'] for r in runs):.0f} of {args.latent_dim}, "
          f"KL {statistics.mean(r['test_kl'] for r in runs):.1f} nats")
    write_json_atomic({
        "benchmark": "vae", "dataset": name, "minutes": args.minutes,
        "device": str(pick_device(args.device)), "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "model": {"class": "ConvVAE", "parameters": num_parameters(model),
                  "likelihood": "discretised logistic per pixel channel, RGB-coupled means"
                                + (", causal 5x5+3x3 context" if args.context else "")},
        "test_bits_per_dim_mean": mean, "test_bits_per_dim_std": std, "target": TARGET,
        "target_met": mean <= TARGET, "literature": dict(LITERATURE), "runs": runs,
        "code_version": code_version(),
    }, args.json)
    print(f"wrote {args.json}")


def save(model: ConvVAE, config: Config, class_names: list[str], run: dict[str, Any],
         dataset: str, path: str) -> None:
    """The trained model as latentlab.load reads it, with its scores and how it was made."""
    scores = {k: v for k, v in run.items() if k != "history"}
    scores.update(dataset=dataset, machine=cpu_name(), threads=torch.get_num_threads(),
                  test_images="official CIFAR-10 images held out of training, themselves "
                              "and their JPEG twins", code_version=code_version())
    save_atomic(model_record(model, config.to_dict(), class_names=class_names,
                             metrics=scores), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
