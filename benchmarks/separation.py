r"""Benchmark: unmix two CIFAR-10 (JPEG copy) images from their average.

Trains each separator for --minutes of wall-clock time (the learning-rate schedule is
compressed to end there and the weights of the best validation epoch are kept), then
prints model, protocol, parameters, wall time, test PSNR and SSIM on the fixed 10,000 test
mixtures, the time to separate all of them, and validation PSNR against training time.
Writes separation.json (and separation_curve.png) under --out, by default
benchmarks/results/separation/ (kept results go in the folder of the question they
answer, e.g. benchmarks/results/separation/width/). JPEG-copy figures
only: a model trained on the JPEG copy learns the compression (benchmarks/real_pixels.py
and `latentlab evaluate` score on real pixels). Anchors (dB): returning the mixture 15.6,
BASIS ~19-20 on the official release.

    python benchmarks/separation.py --minutes 15                       # every model, both protocols
    python benchmarks/separation.py --minutes 180 --models resunet --protocols full
    python benchmarks/separation.py --minutes 0.5 --train-limit 2000   # smoke check
    # shapes on the shipped separator's data, 2 seeds: windows of 16x16 for half the run
    python benchmarks/separation.py --minutes 5 --seeds 2 --models unet --protocols full \
        --recipe shipped --crop 16 --crop-until 0.5 --out benchmarks/results/separation/shapes
    # grow the trained U-Net by two residual blocks at 4x4 and train it further
    python benchmarks/separation.py --minutes 100 --models unet --protocols full \
        --bottleneck-blocks 2 --init-from <separator_model.pth>
    # grow the trained width-32 U-Net to width 64 (same output at the start) and train it
    python benchmarks/separation.py --minutes 90 --models unet --protocols full --width 64 \
        --learning-rate 1e-3 --init-from pretrained/cifar10_unet_separator.pth
    # which U-Net widths separate the 10,000 test mixtures within a minute on 2 CPU cores
    python benchmarks/separation.py --time-widths 64,80,96 --models unet --threads 2
    # score a trained separator: latentlab evaluate <separator_model.pth> --dataset SPEC
    # train a finished run further (fresh schedule); the curve continues the earlier one
    python benchmarks/separation.py --minutes 100 --models unet --protocols full \
        --learning-rate 1e-3 --init-from \
        benchmarks/results/separation/separation_runs_full/separation/unet/separator_model.pth
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latentlab.config import Config  # noqa: E402
from latentlab.data import ImageData  # noqa: E402
from latentlab.data.mixtures import MixturePairs, fixed_test_mixtures  # noqa: E402
from latentlab.devices import cpu_name  # noqa: E402
from latentlab.errors import UserError  # noqa: E402
from latentlab.experiments import separation, shared  # noqa: E402
from latentlab.files import write_json_atomic  # noqa: E402
from latentlab.metrics.separation import separate_all  # noqa: E402
from latentlab.models import SEPARATORS  # noqa: E402
from latentlab.plots import plt, save_figure  # noqa: E402
from latentlab.training import Interrupted, pick_device  # noqa: E402
from latentlab.training.best import curve_since_first_run  # noqa: E402

DATASET = "folder:" + str((ROOT / "../shared/datasets/cifar10-jpeg.zip").resolve())
DATASET_NAME = "CIFAR-10 (JPEG copy)"
# the shipped separator's recipe: official pixels 13 times an epoch beside the JPEG copy (less
# the twins of held-out images); test and validation images are official ones
OFFICIAL = "folder:" + str((ROOT / "../shared/datasets/cifar10-official-5k.zip").resolve())
SHIPPED = {"dataset": OFFICIAL, "extra_train": DATASET, "oversample": 13}
ANCHORS = {"returning the mixture": 15.6, "small U-Net, 15 CPU min": 17.4,
           "BASIS (Jayaram and Thickstun 2020)": 19.0, "target": 21.0}


def dataset_name(args: argparse.Namespace) -> str:
    if args.recipe == "shipped":
        return "CIFAR-10, official pixels (trained beside the JPEG copy)"
    return DATASET_NAME if args.dataset == DATASET else args.dataset


def machine(device: str | None) -> dict:
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "device": device,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="training wall-clock budget per run (default 15)")
    parser.add_argument("--models", default=",".join(SEPARATORS),
                        help=f"comma-separated, from {', '.join(SEPARATORS)}")
    parser.add_argument("--protocols", default="full,assignment",
                        help="comma-separated: full and/or assignment")
    parser.add_argument("--dataset", default=DATASET, help="default: the CIFAR-10 JPEG copy")
    parser.add_argument("--recipe", default="jpeg-copy", choices=("jpeg-copy", "shipped"),
                        help="shipped: the shipped separator's data, official pixels 13 times "
                             "an epoch beside the JPEG copy, scored on official pixels "
                             "(overrides --dataset)")
    parser.add_argument("--crop", type=int, default=0,
                        help="train on windows of N x N pixels of each source (0: whole images)")
    parser.add_argument("--crop-until", type=float, default=1.0,
                        help="with --crop, the part of the schedule on windows (progressive "
                             "resizing)")
    parser.add_argument("--width", type=int, default=0,
                        help="channels of the first layer (0: each model's default)")
    parser.add_argument("--bottleneck-blocks", type=int, default=0,
                        help="residual blocks added at the U-Net's lowest resolution; with "
                             "--init-from, the trained U-Net grows into the deeper one")
    parser.add_argument("--class-weight", type=float, default=0.0,
                        help="weight of the U-Net's auxiliary task of naming the classes of "
                             "the two images (0: off); results go to *_class<W>")
    parser.add_argument("--augmentation", default="auto",
                        help="none, flips, light, shifts or simclr, applied to each source "
                             "(default auto: flips; shifts on the assignment protocol)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.0,
                        help="decay of an average of the weights, evaluated and kept instead "
                             "of the last weights (e.g. 0.999; default 0: off)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs per model and protocol, seeds --seed .. --seed+N-1; the "
                             "table adds mean ± standard deviation")
    parser.add_argument("--train-limit", type=int, default=None, help="for smoke checks only")
    parser.add_argument("--test-limit", type=int, default=None, help="for smoke checks only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--init-from", default=None,
                        help="start from this separator_model.pth (one model, one protocol); "
                             "results go to separation_runs_<protocol>_continued/")
    parser.add_argument("--time-widths", default=None, metavar="W,W,...",
                        help="train nothing: time untrained --models at each width separating "
                             "the fixed test mixtures on --device, to see which widths fit "
                             "the one-minute bar (writes separation-timing.json)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "separation"))
    return parser.parse_args()


def suffix(args: argparse.Namespace, sep: str) -> str:
    """Names of a continued, deeper or class-hinted run's files, so they never overwrite the
    plain run's."""
    parts = (["continued"] if args.init_from else []) + (
        [f"bottleneck{args.bottleneck_blocks}"] if args.bottleneck_blocks else []) + (
        [f"class{args.class_weight:g}"] if args.class_weight else []) + (
        [f"ema{args.ema:g}"] if args.ema else []) + (
        [f"crop{args.crop}until{args.crop_until:g}"] if args.crop else []) + (
        [f"w{args.width}"] if args.width else [])
    return "".join(sep + part for part in parts)


def config_for(args: argparse.Namespace, model: str, protocol: str, seed: int) -> Config:
    # epochs is a ceiling: the time budget ends the run; warm-up is ~2% of it
    data = SHIPPED if args.recipe == "shipped" else {"dataset": args.dataset}
    return Config(experiment="separator", model=model, protocol=protocol,
                    **data, epochs=500, warmup_epochs=10.0, crop=args.crop,
                    crop_until=args.crop_until,
                    width=args.width, bottleneck_blocks=args.bottleneck_blocks,
                    class_weight=args.class_weight,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    ema=args.ema, augmentation=args.augmentation,
                    seed=seed, device=args.device, time_budget=args.minutes,
                    train_limit=args.train_limit, test_limit=args.test_limit,
                    init_from=args.init_from,
                    out=str(Path(args.out) / (f"separation_runs_{protocol}{suffix(args, '_')}"
                                              + (f"_seed{seed}" if args.seeds > 1 else ""))),
                    ).validate()


def run_one(config: Config) -> dict:
    started = time.perf_counter()
    metrics = separation.run(config)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def test_mixtures(args: argparse.Namespace) -> tuple[ImageData, MixturePairs]:
    """--dataset and its fixed test mixtures."""
    data = shared.load_data(Config(experiment="separator", dataset=args.dataset,
                                   seed=args.seed, test_limit=args.test_limit).validate())
    return data, fixed_test_mixtures(data.test_images)


def time_widths(args: argparse.Namespace, models: list[str]) -> list[dict]:
    """Seconds to separate the fixed test mixtures with untrained separators of each width
    (the time does not depend on the weights)."""
    try:
        widths = [int(w) for w in args.time_widths.split(",")]
    except ValueError:
        raise UserError(f"--time-widths takes widths like 64,80,96, not {args.time_widths!r}"
                        ) from None
    if not widths or min(widths) < 1:
        raise UserError(f"--time-widths must be positive, not {args.time_widths!r}")
    data, test = test_mixtures(args)
    rows = []
    for name in models:
        for width in widths:
            config = Config(experiment="separator", model=name, width=width,
                            seed=args.seed).validate()
            model = separation.build(config, data.image_shape).to(pick_device(args.device))
            model.separate(test.mixtures(slice(0, 500)))  # warm-up: one-off set-up untimed
            seconds = separate_all(model, test)[2]
            rows.append({"model": name, "width": width,
                         "num_parameters": shared.num_parameters(model),
                         "device": str(model.device), "test_mixtures": len(test),
                         "separation_seconds": round(seconds, 3)})
            print(f"{name:<16} width {width:>4} {rows[-1]['num_parameters']:>12,} parameters "
                  f"{seconds:>7.1f} s for {len(test):,} mixtures on {model.device} "
                  f"({torch.get_num_threads()} threads)", flush=True)
    return rows


def print_table(rows: list[dict], name: str = DATASET_NAME) -> None:
    header = (f"{'model':<16} {'protocol':<10} {'params':>9} {'train s':>8} {'epochs':>6} "
              f"{'PSNR dB':>8} {'SSIM':>6} {'sep. s':>7} {'mixtures':>8}")
    print(f"\nSeparating two images from their average, {name}\n{header}")
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<16} {r['protocol']:<10} {r['num_parameters']:>9,} "
              f"{r['train_seconds']:>8.0f} {r['epochs']:>6} {r['test_psnr']:>8.2f} "
              f"{r['test_ssim']:>6.3f} {r['separation_seconds']:>7.1f} {r['test_mixtures']:>8,}")
    if rows:
        print(f"{'returning the mixture':<27} {'':>9} {'':>8} {'':>6} "
              f"{rows[0]['baseline_average_psnr']:>8.2f} {rows[0]['baseline_average_ssim']:>6.3f}")
    print("anchors: " + ", ".join(f"{k} {v:.1f} dB" for k, v in ANCHORS.items()))
    for r in rows:
        if "initialised_from" in r:
            earlier = r["initialised_from"]
            print(f"{r['model']} continued {earlier['path']}: trained "
                  f"{earlier.get('train_seconds', 0):.0f} s before, "
                  f"{earlier.get('test_psnr', float('nan')):.2f} dB; "
                  f"{earlier.get('train_seconds', 0) + r['train_seconds']:.0f} s in all")
    print("\nValidation PSNR (dB) against training time (s) since the first epoch, after each "
          "epoch:")
    for r in rows:
        curve = ", ".join(f"{t:.0f}s {p:.2f}" for t, p in curve_since_first_run(r, curve_key(r)))
        print(f"  {r['model']} ({r['protocol']}{older(r)}): {curve}")


def curve_key(row: dict) -> str:
    """Runs before one PSNR definition kept their curve as psnr_vs_time."""
    return "val_psnr_vs_time" if "val_psnr_vs_time" in row else "psnr_vs_time"


def older(row: dict) -> str:
    return "" if "val_psnr_vs_time" in row else ", older PSNR definition"


def print_spread(rows: list[dict]) -> None:
    """Mean ± standard deviation of validation and test PSNR over the seeds of each model
    and protocol (choose on validation)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["protocol"]), []).append(r)
    for (model, protocol), group in groups.items():
        if len(group) > 1:
            spread = {key: f"{statistics.mean(r[key] for r in group):.3f} ± "
                           f"{statistics.stdev(r[key] for r in group):.3f}"
                      for key in ("best_val_psnr", "test_psnr")}
            print(f"{model} ({protocol}), {len(group)} seeds: validation PSNR "
                  f"{spread['best_val_psnr']} dB, test {spread['test_psnr']} dB")


def plot_curves(rows: list[dict], path: Path, name: str = DATASET_NAME) -> None:
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        curve = curve_since_first_run(r, curve_key(r))
        [line] = ax.plot([t / 60 for t, _ in curve], [p for _, p in curve], "-o", markersize=3,
                         label=f"{r['model']} ({r['protocol']}{older(r)}, "
                               f"{r['num_parameters']:,} parameters at the end)")
        offset = r.get("initialised_from", {}).get("train_seconds", 0.0)  # of a continued run
        last_key = "last_weights_" + curve_key(r)
        if last_key in r:  # an --ema run: its last weights, dashed
            last = r[last_key]
            ax.plot([(t + offset) / 60 for t, _ in last], [p for _, p in last], "--",
                    color=line.get_color(), lw=1, label=f"{r['model']}, last weights")
        if "initialised_from" in r:
            ax.axvline(offset / 60, ls="--", lw=1, color="grey")
    for name, value in ANCHORS.items():
        ax.axhline(value, ls=":", lw=1, color="grey")
        # x in axes units: the label stays inside the plot wherever the curves start
        ax.text(0.99, value, name, transform=ax.get_yaxis_transform(), fontsize=7,
                ha="right", va="bottom", color="grey")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(f"Unmixing two images, {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(figure, path)


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [m for m in models if m not in SEPARATORS]
    if unknown or not set(protocols) <= {"full", "assignment"}:
        print(f"unknown model or protocol: {unknown or protocols}", file=sys.stderr)
        return 2
    if args.init_from and len(models) * len(protocols) != 1:
        print("--init-from continues one run: give one --models and one --protocols",
              file=sys.stderr)
        return 2
    if args.time_widths:  # train nothing
        try:
            name, timings = "separation-timing", time_widths(args, models)
            body = {"machine": machine(timings[0]["device"]), "rows": timings}
        except UserError as error:
            print(f"separation benchmark: error: {error}", file=sys.stderr)
            return 2
        path = Path(args.out) / f"{name}.json"
        write_json_atomic({"benchmark": name, "dataset": DATASET_NAME,
                           "date": datetime.datetime.now().isoformat(timespec="seconds"),
                           **body}, path)
        print(f"wrote {path}")
        return 0
    rows = []
    try:  # every run's options are checked before the first one trains
        configs = [config_for(args, model, protocol, seed)
                   for protocol in protocols for model in models
                   for seed in range(args.seed, args.seed + args.seeds)]
        for config in configs:
            print(f"\n=== {config.model}, {config.protocol} protocol, seed {config.seed}, "
                  f"{args.minutes:g} min ===", flush=True)
            rows.append(run_one(config))
    except UserError as error:
        print(f"separation benchmark: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as error:  # the run's best weights so far stay in best_separator.pth
        print(f"separation benchmark: {error}", file=sys.stderr)
        return 130
    name = dataset_name(args)
    print_table(rows, name)
    print_spread(rows)
    out = Path(args.out)
    result = {
        "benchmark": "separation", "dataset": name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(rows[0]["device"] if rows else None),
        "minutes_per_run": args.minutes, "init_from": args.init_from,
        "bottleneck_blocks": args.bottleneck_blocks, "class_weight": args.class_weight,
        "recipe": args.recipe, "crop": args.crop, "crop_until": args.crop_until,
        "width": args.width,
        "batch_size": args.batch_size, "augmentation": args.augmentation,
        "learning_rate": args.learning_rate, "ema": args.ema, "seed": args.seed,
        "seeds": args.seeds,
        "train_limit": args.train_limit, "test_limit": args.test_limit,
        "anchors_db": ANCHORS, "runs": rows,
    }
    stem = "separation" + suffix(args, "-")
    write_json_atomic(result, out / f"{stem}.json")
    plot_curves(rows, out / f"{stem}_curve.png", name)
    print(f"\nwrote {out / f'{stem}.json'} and {out / f'{stem}_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
