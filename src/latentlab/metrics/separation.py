"""A separator's scores: PSNR and SSIM of both outputs against both sources (whichever
order they come in), the gain over returning the mixture, by pair of classes, on the JPEG
twins of the test images (the shortcut ratio), and the validation curve."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from latentlab.data import ImageData
from latentlab.data.mixtures import MixturePairs
from latentlab.data.twins import read_twin_images
from latentlab.metrics.images import (
    class_pair_means,
    separation_scores,
    shortcut_ratio,
    tile_swap_psnr,
)
from latentlab.models import Separator

SWAP_TILES = (16, 8, 4)  # tile sizes of the swap oracle in metrics.json (pixels)


def mixture_psnr(first: Tensor, second: Tensor, x1: Tensor, x2: Tensor) -> Tensor:
    """The mean over mixtures of the PSNR of both outputs under the better assignment: the
    one definition of a separator's PSNR, for training logs, validation and test."""
    return separation_scores(first.float(), second.float(), x1.float(), x2.float())[
        "psnr"].mean().detach()


def as_sources(sources: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2, C, H, W) uint8 pairs -> two (B, C, H, W) float images in [0, 1]."""
    pair = sources.float() / 255
    return pair[:, 0], pair[:, 1]


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


def per_mixture_scores(pairs: MixturePairs, estimate_1: Tensor, estimate_2: Tensor,
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


def score_mixtures(model: Separator, test: MixturePairs, labels: Tensor | None = None,
             class_names: list[str] | None = None) -> dict[str, Any]:
    """The separator's scores on the fixed test mixtures, beside the mixture baseline, and
    the time it took to separate them on the model's device. With the test images' labels,
    also the mean PSNR of each pair of classes."""
    x1_hat, x2_hat, seconds = separate_all(model, test)
    per_mixture = per_mixture_scores(test, x1_hat, x2_hat, tiles=SWAP_TILES)
    scores = {key: float(value.mean()) for key, value in per_mixture.items()}
    # how much higher PSNR would be if the sources could swap places per tile: the share of
    # the error that is confusion over which source is which, rather than wrong content
    swaps = {str(tile): scores[f"tile_{tile}"] for tile in SWAP_TILES}
    mixtures = torch.cat([test.mixtures(slice(i, i + 1000)).cpu()
                          for i in range(0, len(test), 1000)])
    per_mixture_baseline = per_mixture_scores(test, mixtures, mixtures)
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


def twin_scores(model: Separator, test: MixturePairs, twin_images: Tensor,
                real: dict[str, Any]) -> dict[str, Any]:
    """The same test pairs scored on the images' JPEG twins, and the shortcut ratio: the gain
    over returning the mixture on real pixels (real, from score_mixtures) / the gain on the
    twins."""
    twins = score_mixtures(model, MixturePairs(twin_images, test.pairs, test.seed))
    gain = twins["test_psnr"] - twins["baseline_average_psnr"]
    return {"jpeg_twins": {key: twins[key] for key in (
                "test_psnr", "test_ssim", "baseline_average_psnr")} | {"gain_over_mixture": gain},
            "shortcut_ratio": shortcut_ratio(
                real["test_psnr"] - real["baseline_average_psnr"], gain)}


def psnr_curve(history: list[dict[str, float]], key: str = "val_psnr") -> list[list[float]]:
    """[training seconds so far, validation PSNR (history[key])] after each epoch."""
    curve, elapsed = [], 0.0
    for record in history:
        elapsed += record["seconds"]
        curve.append([round(elapsed, 1), round(record.get(key, float("nan")), 3)])
    return curve


def score_on_test_split(model: Separator, data: ImageData, test: MixturePairs,
                        dataset: str) -> dict[str, Any]:
    """score_mixtures on test, the fixed mixtures of data's test images
    (fixed_test_mixtures), and, where a twins file lies beside the dataset, twin_scores on
    their JPEG twins."""
    scores = score_mixtures(model, test, data.test_labels, data.class_names)
    twin_images = read_twin_images(dataset, data.test_names)
    if twin_images is not None:
        scores.update(twin_scores(model, test, twin_images, scores))
    return scores
