"""Unmixing: recover x1 and x2 from their average m = (x1 + x2) / 2.

The order of the two outputs is arbitrary, so training and every metric use the better of
the two assignments per mixture (permutation-invariant training, Yu et al. 2017)."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from latentlab.config import Config
from latentlab.data.mixtures import MixturePairs, fixed_test_mixtures, training_mixtures
from latentlab.errors import UserError
from latentlab.experiments import shared
from latentlab.losses import separation_objective
from latentlab.metrics.separation import (
    as_sources,
    mixture_psnr,
    psnr_curve,
    score_on_test_split,
)
from latentlab.models import SEPARATORS, Separator, TwoDecoderVAESeparator
from latentlab.plots import plot_separation_examples
from latentlab.report import show_class_pairs, write_comparison
from latentlab.training import Hooks, Job, Steps
from latentlab.training.best import BestWeights, warm_start
from latentlab.training.schedule import KLWarmup, kl_warmup
from latentlab.transforms import AUGMENTATIONS, Views, no_augment, windowed_views

VALIDATION_MIXTURES = 2_000  # scored every epoch: enough to rank epochs, cheap next to one
VALIDATION_MIXTURE_SEED = 1
CROPPABLE = ("unet", "resunet")  # fully convolutional: they separate images of any size


def check_model_name(name: str) -> None:
    if name not in SEPARATORS:
        raise UserError(f"--model must be one of {', '.join(SEPARATORS)}, not {name!r}")


def check_crop(config: Config) -> None:
    if config.crop and config.model not in CROPPABLE:
        raise UserError(f"--crop needs --model {' or '.join(CROPPABLE)}, which separate images "
                        f"of any size; {config.model} resizes them to 32x32")


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


def training_views(config: Config, augmentation: str) -> Views:
    """The augmentation of each source, then with --crop a random window of each for the
    first --crop-until of the schedule: a fully convolutional separator learns from fewer
    pixels per step, so a time budget buys more epochs; it is scored on whole images."""
    check_crop(config)
    return windowed_views(AUGMENTATIONS[augmentation], config.crop, config.crop_until)


def make_train_step(config: Config, warmup: KLWarmup | None, views: Views,
                    train: MixturePairs) -> Any:
    """Training step on the raw outputs m +- d; a variational separator's KL weight follows
    warmup. The loop hands it the indices of the batch's pairs in train, so it can look up
    their sources and classes. With an augmentation or --crop, each source is changed on its
    own and the mixture made again from the results. With --class-weight, the U-Net's class
    head learns to name the classes of both images."""
    plain = views.whole is no_augment and not config.crop

    def step(model: Separator, m: Tensor, index: Tensor) -> dict[str, Tensor]:
        sources = train.sources(index)
        if not plain:
            flat = views(sources.flatten(0, 1).float() / 255)
            pair = flat.view(*sources.shape[:3], *flat.shape[-2:])
            x1, x2 = pair[:, 0], pair[:, 1]
            size = (flat.shape[-2], flat.shape[-1])  # the window's, with --crop
            m = model.prepare((x1 + x2) / 2, size, checked=False)
        else:
            x1, x2 = as_sources(sources)
        d, kl = model(m)
        weight = warmup.step() if warmup is not None else None
        logs = separation_objective(m + d, m - d, x1, x2, kl, weight)
        logs["psnr"] = mixture_psnr(m + d, m - d, x1, x2)
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
        logs = separation_objective(first, second, x1, x2, kl, config.beta if variational else None)
        logs["psnr"] = mixture_psnr(first, second, x1, x2)  # what chooses the best epoch
        return logs

    return step


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    check_model_name(config.model)  # before the minutes a large dataset takes to load
    check_crop(config)
    data = shared.load_data(config)
    shared.check_crop_fits(config, data.image_shape)
    assert data.val_images is not None
    images, labels = data.epoch_images()  # --oversample repeats images by index
    train = training_mixtures(images, config.protocol, config.seed, labels)
    val = fixed_test_mixtures(data.val_images, VALIDATION_MIXTURES, VALIDATION_MIXTURE_SEED)
    test = fixed_test_mixtures(data.test_images)
    fresh = " (fresh pairs every epoch)" if train.fresh_each_epoch else ""
    print(f"{config.protocol} protocol: {len(train):,} training mixtures of "
          f"{len(train.images):,} images{fresh}; {len(val):,} validation and {len(test):,} "
          "test mixtures of distinct images")

    model = build(config, data.image_shape, len(data.class_names))
    initialised_from = warm_start(model, config.init_from) if config.init_from else None

    # the views index like tensors: the loop reads mixtures as images and, as labels, the
    # indices of the training pairs and the sources of the validation pairs
    job = Job(config, (cast(Tensor, train.mixture_view()), torch.arange(len(train))),
              (cast(Tensor, val.mixture_view()), cast(Tensor, val.source_view())),
              config.run_dir / "checkpoint.pth", resume)
    variational = isinstance(model, TwoDecoderVAESeparator)
    warmup = kl_warmup(config, len(train), job.checkpoint, resume) if variational else None
    augmentation = shared.augmentation_name(config, data.image_shape)
    views = training_views(config, augmentation)
    steps = Steps(make_train_step(config, warmup, views, train),
                  make_eval_step(config, variational), views.at, views.settles_at)
    best = BestWeights(model, config, config.run_dir / "best_separator.pth", resume)
    result = shared.train(model, job, steps, Hooks(train.resample, best),
                          note=f" with {augmentation} augmentation")
    best.restore()

    metrics = {"model": config.model, "protocol": config.protocol,
               **score_on_test_split(model, data, test, config.dataset),
               "best_epoch": best.epoch, "best_val_psnr": round(best.score, 3),
               "val_psnr_vs_time": psnr_curve(result.history)}
    if config.ema:  # the same run read out with its last weights instead of their average
        metrics["last_weights_val_psnr_vs_time"] = psnr_curve(result.history, "val_raw_psnr")
    if initialised_from:
        metrics["initialised_from"] = initialised_from
    plot_separation_examples(model, test, config.run_dir / "separation_examples.png",
                             f"{config.model}: test PSNR {metrics['test_psnr']:.2f} dB "
                             f"(returning the mixture: {metrics['baseline_average_psnr']:.2f} dB)")
    show_class_pairs(metrics, config.model, config.run_dir / "separation_class_pairs.png")
    metrics = shared.finish(model, config, data, result, "separation", metrics,
                            loss_keys=("loss", "psnr"), model_name="separator",
                            title=f"{config.model} separator: permutation-invariant loss "
                                  "and PSNR (dB)")
    write_comparison(config.run_dir.parent)
    return metrics
