r"""Benchmark: which training data makes a CIFAR-10 separator work on real pixels.

Every recipe trains the default U-Net from nothing for --minutes per seed and is scored on
the validation split: 2,000 fixed mixtures of official CIFAR-10 images (exact pixels, from
../shared/datasets/cifar10-official-5k.zip) held out of training, whose JPEG twins are kept
out of training too. The test split (1,017 other official images, twins excluded alike) is
not looked at here: `latentlab evaluate` scores the one model chosen. Prints mean and spread
over seeds and writes benchmarks/results/separation/training-data/real_pixels.json.

    python benchmarks/real_pixels.py --minutes 6 --seeds 2       # every recipe
    python benchmarks/real_pixels.py --minutes 0.2 --recipes official --train-limit 200
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from separation import machine  # noqa: E402

from latentlab.config import Config  # noqa: E402
from latentlab.errors import UserError  # noqa: E402
from latentlab.experiments import separation  # noqa: E402
from latentlab.files import write_json_atomic  # noqa: E402

DATASETS = (ROOT / "../shared/datasets").resolve()
OFFICIAL = f"folder:{DATASETS / 'cifar10-official-5k.zip'}"
JPEG_COPY = f"folder:{DATASETS / 'cifar10-jpeg.zip'}"
# recipe -> the options it sets; the official images are --dataset in every one, so the
# validation and test splits are the same official images for all
RECIPES: dict[str, dict] = {
    "official": {},  # the 3,661 official training images alone
    "official+jpeg": {"extra_train": JPEG_COPY},  # beside 48,576 JPEG-copy images
    # the same, each official image 13 times an epoch: about half of all sources
    "official x13+jpeg": {"extra_train": JPEG_COPY, "oversample": 13},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time per run")
    parser.add_argument("--seeds", type=int, default=2, help="runs per recipe (seeds 0..N-1)")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated, from: {'; '.join(RECIPES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=None, help="for smoke checks only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "separation"
                                             / "training-data"))
    return parser.parse_args()


def config_for(args: argparse.Namespace, recipe: str, seed: int) -> Config:
    # epochs is a ceiling: the time budget ends the run; the seed also draws the held-out
    # official images, so every seed has its own validation and test images
    return Config(experiment="separator", dataset=OFFICIAL, epochs=500, warmup_epochs=10.0,
                  batch_size=64, seed=seed, time_budget=args.minutes,
                  train_limit=args.train_limit, **RECIPES[recipe],
                  out=str(Path(args.out) / "runs" / f"{recipe.replace(' ', '')}-seed{seed}"),
                  ).validate()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if any(r not in RECIPES for r in recipes):
        print(f"unknown recipe in {recipes}; choose from {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    rows = []
    try:
        for recipe in recipes:
            for seed in range(args.seeds):
                print(f"\n=== {recipe}, seed {seed}, {args.minutes:g} min ===", flush=True)
                metrics = separation.run(config_for(args, recipe, seed))
                rows.append({"recipe": recipe, "seed": seed, "epochs": metrics["epochs"],
                             "train_seconds": metrics["train_seconds"],
                             "images_per_second": metrics["images_per_second"],
                             "best_val_psnr": metrics["best_val_psnr"],
                             "val_psnr_vs_time": metrics["val_psnr_vs_time"]})
    except UserError as error:
        print(f"real-pixels benchmark: error: {error}", file=sys.stderr)
        return 2
    summary = {}
    print(f"\n{'recipe':<20} {'seeds':>5} {'epochs':>7} {'img/s':>6} "
          f"{'val PSNR (real pixels)':>24}")
    for recipe in recipes:
        mine = [r for r in rows if r["recipe"] == recipe]
        psnr = [r["best_val_psnr"] for r in mine]
        spread = statistics.stdev(psnr) if len(psnr) > 1 else float("nan")
        summary[recipe] = {"mean": statistics.mean(psnr), "std": spread, "runs": len(psnr)}
        print(f"{recipe:<20} {len(mine):>5} {statistics.mean(r['epochs'] for r in mine):>7.1f} "
              f"{statistics.mean(r['images_per_second'] for r in mine):>6.0f} "
              f"{statistics.mean(psnr):>17.2f} ± {spread:.2f}")
    path = Path(args.out) / "real_pixels.json"
    write_json_atomic({"benchmark": "real_pixels", "date": datetime.datetime.now().isoformat(
        timespec="seconds"), "machine": machine("cpu"), "minutes_per_run": args.minutes,
        "scored_on": "validation: 2,000 mixtures of held-out official CIFAR-10 images",
        "summary": summary, "runs": rows}, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
