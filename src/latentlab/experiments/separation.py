"""Unmixing: recover x1 and x2 from their average m = (x1 + x2) / 2.

The order of the two outputs is arbitrary, so training and every metric use the better of
the two assignments per mixture (permutation-invariant training, Yu et al. 2017)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from latentlab import distributed
from latentlab.checkpoint import model_record, read_checkpoint, rebuild
from latentlab.config import Config
from latentlab.data.mixtures import MixturePairs, fixed_test_mixtures, training_mixtures
from latentlab.data.twins import read_twin_images
from latentlab.errors import UserError
from latentlab.evaluation import (
    align_to_sources,
    class_pair_means,
    separation_scores,
    shortcut_ratio,
    tile_swap_psnr,
)
from latentlab.experiments import shared
from latentlab.files import save_atomic, write_json_atomic
from latentlab.losses import separation_objective
from latentlab.models import SEPARATORS, Separator, TwoDecoderVAESeparator, UNetSeparator
from latentlab.plots import plot_class_pair_psnr, plot_image_rows, plot_separation_comparison
from latentlab.report import describe_class_pairs
from latentlab.training import pick_device, steps_per_epoch
from latentlab.transforms import AUGMENTATIONS, no_augment

EXAMPLES = 10  # test mixtures shown in separation_examples.png
VALIDATION_MIXTURES = 2_000  # scored every epoch: enough to rank epochs, cheap next to one
VALIDATION_MIXTURE_SEED = 1
SWAP_TILES = (16, 8, 4)  # tile sizes of the swap oracle in metrics.json (pixels)


def check_model_name(name: str) -> None:
    if name not in SEPARATORS:
        raise UserError(f"--model must be one of {', '.join(SEPARATORS)}, not {name!r}")


def build(config: Config, image_shape: tuple[int, int, int], n_classes: int = 0) -> Separator:
    """The separator of config; with --class-weight, a U-Net with a head for n_classes."""
    check_model_name(config.model)
    torch.manual_seed(config.seed)
    options: dict[str, Any] = {"width": config.width} if config.width else {}
    if config.bottleneck_blocks:  # unet only, checked by Config.validate
        options["bottleneck_blocks"] = config.bottleneck_blocks
    if config.class_weight:  # unet only, checked by Config.validate
        if n_classes < 2:
            raise UserError("--class-weight needs a dataset of two or more classes")
        options["class_head"] = n_classes
    return SEPARATORS[config.model](image_shape, **options)


def warm_start(model: Separator, path: str | Path) -> dict[str, Any]:
    """Copy the weights of the finished separator at path into model (same class and
    hyperparameters, except that a U-Net may grow wider and grow bottleneck blocks, both
    without changing its output, and gain or lose its class head) and return what that file
    says about its own training."""
    saved = read_checkpoint(path, "model")
    finished = rebuild(saved, path)
    old, new = dict(finished.hparams()), dict(model.hparams())
    old.pop("class_head", None)
    new.pop("class_head", None)
    grown = new.pop("bottleneck_blocks", 0) >= old.pop("bottleneck_blocks", 0)
    if isinstance(model, UNetSeparator) and isinstance(finished, UNetSeparator):
        grown = grown and new.pop("width") >= old.pop("width")
    if type(finished) is not type(model) or old != new or not grown:
        raise UserError(
            f"--init-from {path} holds a {type(finished).__name__} {finished.hparams()}, but "
            f"this run builds a {type(model).__name__} {model.hparams()}; give the --model, "
            "--width and --dataset it was trained with (a U-Net's --width and "
            "--bottleneck-blocks may only grow)")
    if isinstance(model, UNetSeparator):
        model.grow_from(finished.state_dict())
    else:
        model.load_state_dict(finished.state_dict())
    # totals since the very first run, when that run was itself a continuation
    earlier = saved.get("metrics", {})
    before = earlier.get("initialised_from", {})
    record: dict[str, Any] = {"path": str(path)}
    if "train_seconds" in earlier:
        record["train_seconds"] = before.get("train_seconds", 0.0) + earlier["train_seconds"]
    if "epochs" in earlier:
        record["epochs"] = before.get("epochs", 0) + earlier["epochs"]
    if "test_psnr" in earlier:
        record["test_psnr"] = earlier["test_psnr"]
    if "psnr_vs_time" in earlier:
        record["psnr_vs_time"] = curve_since_first_run(earlier)
    return record


def curve_since_first_run(metrics: dict[str, Any]) -> list[list[float]]:
    """A run's [training seconds, test PSNR] curve, timed from the first epoch of the first
    run: a continued run's curve follows the curve of the run it started from."""
    before = metrics.get("initialised_from", {})
    offset = before.get("train_seconds", 0.0)
    return before.get("psnr_vs_time", []) + [
        [t + offset, psnr] for t, psnr in metrics.get("psnr_vs_time", [])]


def as_sources(sources: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2, C, H, W) uint8 pairs -> two (B, C, H, W) float images in [0, 1]."""
    pair = sources.float() / 255
    return pair[:, 0], pair[:, 1]


def make_train_step(config: Config, n_steps: int, variational: bool, augmentation: str,
                    train: MixturePairs) -> Any:
    """Training step on the raw outputs m +- d; the KL weight ramps up over
    --kl-warmup-epochs. The loop hands it the indices of the batch's pairs in train, so it
    can look up their sources and classes. With an augmentation, each source is augmented on
    its own and the mixture made again from the results. With --class-weight, the U-Net's
    class head learns to name the classes of both images."""
    steps_done = [0]
    augment = AUGMENTATIONS[augmentation]

    def step(model: Separator, m: Tensor, index: Tensor) -> dict[str, Tensor]:
        sources = train.sources(index)
        if augment is not no_augment:
            pair = augment(sources.flatten(0, 1).float() / 255).view(sources.shape)
            x1, x2 = pair[:, 0], pair[:, 1]
            m = model.prepare((x1 + x2) / 2, model.input_size(), checked=False)
        else:
            x1, x2 = as_sources(sources)
        d, kl = model(m)
        warmup = config.kl_warmup_epochs * n_steps
        weight = config.beta * min(1.0, steps_done[0] / warmup) if warmup else config.beta
        steps_done[0] += 1
        logs = separation_objective(m + d, m - d, x1, x2, kl, weight if variational else None)
        logits = getattr(model, "logits", None)
        if config.class_weight and logits is not None:
            present = F.one_hot(train.classes(index), logits.shape[1]).amax(1).float()
            bce = F.binary_cross_entropy_with_logits(logits.float(), present)
            logs["loss"] = logs["loss"] + config.class_weight * bce
            logs["class_bce"] = bce.detach()
        return logs

    return step


def make_eval_step(config: Config, variational: bool) -> Any:
    """The same objective on the projected outputs (what `separate()` returns)."""

    def step(model: Separator, m: Tensor, sources: Tensor) -> dict[str, Tensor]:
        x1, x2 = as_sources(sources)
        d, kl = model(m)
        first, second = model.project(m, d)
        return separation_objective(first, second, x1, x2, kl, config.beta if variational else None)

    return step


@torch.no_grad()
def separate_all(model: Separator, pairs: MixturePairs,
                 batch_size: int = 500) -> tuple[Tensor, Tensor, float]:
    """Separate every mixture of pairs: (x1_hat, x2_hat) on the CPU and the seconds it took
    (network and projection only)."""
    model.eval()
    outputs, seconds = [], 0.0
    for start in range(0, len(pairs), batch_size):
        m = pairs.mixtures(slice(start, start + batch_size))
        started = time.perf_counter()
        estimates = model.separate(m)
        if estimates[0].device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        outputs.append(torch.stack(estimates, 1).cpu())
    pair = torch.cat(outputs)
    return pair[:, 0], pair[:, 1], seconds


def score(pairs: MixturePairs, estimate_1: Tensor, estimate_2: Tensor,
          tiles: tuple[int, ...] = (), batch_size: int = 1000) -> dict[str, Tensor]:
    """Per-mixture MSE, PSNR and SSIM of every mixture (each the mean over its two outputs),
    and for each of `tiles` the tile-swap oracle's PSNR, as "tile_<size>"; each (N,) float64."""
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, len(pairs), batch_size):
        window = slice(start, start + batch_size)
        x1, x2 = as_sources(pairs.sources(window).cpu())
        first, second = estimate_1[window], estimate_2[window]
        scores = separation_scores(first, second, x1, x2)
        for tile in tiles:
            scores[f"tile_{tile}"] = tile_swap_psnr(first, second, x1, x2, tile)
        for key, value in scores.items():
            parts.setdefault(key, []).append(value.double())
    return {key: torch.cat(values) for key, values in parts.items()}


def by_class_pair(psnr: Tensor, baseline_psnr: Tensor, pairs: MixturePairs, labels: Tensor,
                  class_names: list[str]) -> dict[str, Any]:
    """Mean PSNR of the test mixtures of each pair of classes, its gain over returning the
    mixture, and how many mixtures each mean is over. The gain is what tells which contents
    the separator tells apart: two images alike (often of one class) are close to their
    mixture already, so their PSNR is high even where the separator adds little."""
    classes = labels[pairs.index(slice(None)).cpu()]
    means, counts = class_pair_means(psnr, classes, len(class_names))
    baseline, _ = class_pair_means(baseline_psnr, classes, len(class_names))

    def table(values: Tensor) -> list[list[float | None]]:  # null where no mixture falls
        return [[None if n == 0 else round(float(v), 3) for v, n in zip(row, row_counts)]
                for row, row_counts in zip(values, counts)]

    return {"classes": class_names, "psnr": table(means),
            "gain_over_mixture": table(means - baseline), "mixtures": counts.tolist()}


class BestWeights:
    """Keeps the weights of the epoch with the highest validation PSNR in a file beside the
    run, so a run stopped by --time-budget (or resumed) ends with its best model; the test
    split plays no part in the choice."""

    def __init__(self, model: Separator, config: Config, path: Path, resume: bool) -> None:
        self.model, self.config, self.path = model, config, path
        self.psnr, self.epoch = float("-inf"), 0
        if resume and path.is_file():
            saved = read_checkpoint(path, "best separator")
            self.psnr, self.epoch = saved["val_psnr"], saved["epoch"]
        else:
            path.unlink(missing_ok=True)

    def update(self, epoch: int, record: dict[str, float]) -> None:
        if record["val_psnr"] > self.psnr:
            self.psnr, self.epoch = record["val_psnr"], epoch
            save_atomic(model_record(self.model, self.config.to_dict(), val_psnr=self.psnr,
                                     epoch=epoch), self.path)

    def restore(self) -> None:
        if self.path.is_file():
            saved = read_checkpoint(self.path, "best separator")
            self.model.load_state_dict(saved["state_dict"])


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    check_model_name(config.model)  # before the minutes a large dataset takes to load
    data = shared.load_data(config)
    train = training_mixtures(data.train_images, config.protocol, config.seed,
                              data.train_labels)
    assert data.val_images is not None
    val = fixed_test_mixtures(data.val_images, VALIDATION_MIXTURES, VALIDATION_MIXTURE_SEED)
    test = fixed_test_mixtures(data.test_images)
    fresh = " (fresh pairs every epoch)" if train.fresh_each_epoch else ""
    print(f"{config.protocol} protocol: {len(train):,} training mixtures of "
          f"{len(train.images):,} images{fresh}; {len(val):,} validation and {len(test):,} "
          "test mixtures of distinct images")
    model = build(config, data.image_shape, len(data.class_names))
    initialised_from = warm_start(model, config.init_from) if config.init_from else None
    if initialised_from:
        print(f"starting from the weights of {config.init_from} (trained "
              f"{initialised_from.get('train_seconds', 0) / 60:.0f} min, test PSNR "
              f"{initialised_from.get('test_psnr', float('nan')):.2f} dB)")
    torch.manual_seed(config.seed)
    run_dir = config.run_dir
    augmentation = shared.augmentation_name(config, data.image_shape)
    if distributed.is_main():
        shared.start_run(config)
        print(f"training {config.model} ({type(model).__name__}, "
              f"{shared.num_parameters(model):,} parameters) on {pick_device(config.device)} "
              f"with {augmentation} augmentation; results in {run_dir}/")
    variational = isinstance(model, TwoDecoderVAESeparator)
    best = BestWeights(model, config, run_dir / "best_separator.pth", resume)
    # the views index like tensors: the loop reads mixtures as images and, as labels, the
    # indices of the training pairs and the sources of the validation pairs
    result = shared.fit(model, config, cast(Tensor, train.mixture_view()),
                        torch.arange(len(train)),
                        cast(Tensor, val.mixture_view()), cast(Tensor, val.source_view()),
                        make_train_step(config, steps_per_epoch(len(train), config.batch_size),
                                        variational, augmentation, train),
                        make_eval_step(config, variational), run_dir / "checkpoint.pth",
                        resume=resume, on_epoch_start=train.resample, on_epoch_end=best.update)
    best.restore()
    metrics = {"model": config.model, "protocol": config.protocol,
               **evaluate(model, test, data.test_labels, data.class_names)}
    twin_images = read_twin_images(config.dataset, data.test_names)
    if twin_images is not None:  # real pixels beside their JPEG twins: the shortcut ratio
        metrics.update(score_twins(model, test, twin_images, metrics))
    metrics.update({"best_epoch": best.epoch, "best_val_psnr": round(best.psnr, 3),
                    "psnr_vs_time": psnr_curve(result.history)})
    if config.ema:  # the same run read out with its last weights instead of their average
        metrics["last_weights_psnr_vs_time"] = psnr_curve(result.history, "val_raw_psnr")
    if initialised_from:
        metrics["initialised_from"] = initialised_from
    plot_examples(model, test, metrics, config)
    show_class_pairs(metrics, config.model, run_dir / "separation_class_pairs.png")
    metrics = shared.finish(model, config, data, result, "separation", metrics,
                            loss_keys=("loss", "psnr"), model_name="separator",
                            title=f"{config.model} separator: permutation-invariant loss "
                                  "and PSNR (dB)")
    write_comparison(run_dir.parent)
    return metrics


def evaluate(model: Separator, test: MixturePairs, labels: Tensor | None = None,
             class_names: list[str] | None = None) -> dict[str, Any]:
    """The separator's scores on the fixed test mixtures, beside the mixture baseline, and
    the time it took to separate them on the model's device. With the test images' labels,
    also the mean PSNR of each pair of classes."""
    x1_hat, x2_hat, seconds = separate_all(model, test)
    per_mixture = score(test, x1_hat, x2_hat, tiles=SWAP_TILES)
    scores = {key: float(value.mean()) for key, value in per_mixture.items()}
    # how much higher PSNR would be if the sources could swap places per tile: the share of
    # the error that is confusion over which source is which, rather than wrong content
    swaps = {str(tile): scores[f"tile_{tile}"] for tile in SWAP_TILES}
    mixtures = torch.cat([test.mixtures(slice(i, i + 1000)).cpu()
                          for i in range(0, len(test), 1000)])
    per_mixture_baseline = score(test, mixtures, mixtures)
    baseline = {key: float(value.mean()) for key, value in per_mixture_baseline.items()}
    metrics = {
        "test_mse": scores["mse"], "test_psnr": scores["psnr"], "test_ssim": scores["ssim"],
        "test_psnr_if_tiles_could_swap": swaps,
        "baseline_average_mse": baseline["mse"], "baseline_average_psnr": baseline["psnr"],
        "baseline_average_ssim": baseline["ssim"], "test_mixtures": len(test),
        "separation_seconds": round(seconds, 3),
        "mixtures_per_second": round(len(test) / max(seconds, 1e-9), 1),
    }
    if labels is not None and class_names and len(class_names) > 1:
        metrics["test_psnr_by_class_pair"] = by_class_pair(
            per_mixture["psnr"], per_mixture_baseline["psnr"], test, labels, class_names)
    return metrics


def score_twins(model: Separator, test: MixturePairs, twin_images: Tensor,
                real: dict[str, Any]) -> dict[str, Any]:
    """The same test pairs scored on the images' JPEG twins, and the shortcut ratio: the gain
    over returning the mixture on real pixels (real, from evaluate) / the gain on the twins."""
    twins = evaluate(model, MixturePairs(twin_images, test.pairs, test.seed))
    gain = twins["test_psnr"] - twins["baseline_average_psnr"]
    return {"jpeg_twins": {key: twins[key] for key in (
                "test_psnr", "test_ssim", "baseline_average_psnr")} | {"gain_over_mixture": gain},
            "shortcut_ratio": shortcut_ratio(
                real["test_psnr"] - real["baseline_average_psnr"], gain)}


def show_class_pairs(metrics: dict[str, Any], model_name: str, path: Path) -> bool:
    """Print the class pairs a separator gains least and most on, and draw the class-pair
    heat maps at path, when the metrics have them (labelled test images); whether it drew."""
    if "test_psnr_by_class_pair" not in metrics:
        return False
    table = metrics["test_psnr_by_class_pair"]
    print(f"by class pair, {describe_class_pairs(table)}")
    plot_class_pair_psnr(table, path,
                         f"{model_name}: test mixtures by the classes of their two images")
    return True


def psnr_curve(history: list[dict[str, float]], key: str = "val_psnr") -> list[list[float]]:
    """[training seconds so far, validation PSNR (history[key])] after each epoch."""
    curve, elapsed = [], 0.0
    for record in history:
        elapsed += record["seconds"]
        curve.append([round(elapsed, 1), round(record.get(key, float("nan")), 3)])
    return curve


def plot_examples(model: Separator, test: MixturePairs, metrics: dict[str, Any],
                  config: Config) -> None:
    shown = slice(0, min(EXAMPLES, len(test)))
    x1, x2 = as_sources(test.sources(shown).cpu())
    m = test.mixtures(shown).cpu()
    estimate_1, estimate_2 = model.separate(m)
    first, second = align_to_sources(estimate_1.cpu(), estimate_2.cpu(), x1, x2)
    plot_image_rows([m, x1, x2, first, second], ["mixture", "x1", "x2", "x1_hat", "x2_hat"],
                    config.run_dir / "separation_examples.png",
                    f"{config.model}: test PSNR {metrics['test_psnr']:.2f} dB "
                    f"(returning the mixture: {metrics['baseline_average_psnr']:.2f} dB)")


def write_comparison(folder: Path) -> None:
    """comparison.json and separation_comparison.png over every model run under folder."""
    rows = []
    for path in sorted(folder.glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "test_psnr" not in metrics:
            continue
        rows.append({key: metrics.get(key) for key in (
            "model", "protocol", "dataset", "test_psnr", "test_ssim", "test_mse",
            "baseline_average_psnr", "baseline_average_ssim", "num_parameters", "train_seconds",
            "epochs", "separation_seconds", "test_mixtures")})
    if rows:
        write_json_atomic(rows, folder / "comparison.json")
        plot_separation_comparison(rows, folder / "separation_comparison.png")
