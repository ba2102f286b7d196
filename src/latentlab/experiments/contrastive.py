"""Contrastive embeddings, three ways (the experiment's name picks one):

- contrastive: the course assignment's method. Balanced pairs of images of the same class
  (positives) and of different classes (negatives); the margin loss of Hadsell et al. 2006
  on the L2-normalised embeddings.
- supcon: supervised contrastive loss (Khosla et al. 2020) over two augmented views of a
  batch, on a projection head above the embedding.
- simclr: NT-Xent over two augmented views (Chen et al. 2020); labels are never used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentlab import distributed
from latentlab.config import Config
from latentlab.data import ImageData
from latentlab.data.pairs import balanced_pairs
from latentlab.devices import pick_device, use_bf16
from latentlab.errors import UserError
from latentlab.experiments import shared
from latentlab.losses import margin_contrastive_loss, supcon_loss
from latentlab.metrics.embeddings import (
    embed_all,
    knn_accuracy,
    pair_distances,
    pair_metrics,
    subsample,
)
from latentlab.models import (
    CONTRASTIVE_MODELS,
    AirbenchContrastive,
    ContrastiveModel,
    resolve_family,
)
from latentlab.plots import plot_distance_histograms
from latentlab.training import Hooks, Steps, TrainStep
from latentlab.training.best import BestWeights
from latentlab.transforms import AUGMENTATIONS, Views, simclr_augment, windowed_views

PROJECTION_DIM = 128  # SupCon/SimCLR head output, as in both papers
WHITENING_IMAGES = 5000  # airbench fits its whitening layer on 5,000 training images
KNN_BANK = 5000  # training images each epoch's validation kNN compares with: a few seconds
PAIRS_PER_IMAGE = 4  # pairs read from each embedded batch, per image: more signal per forward pass
TITLES = {"contrastive": "Margin contrastive", "supcon": "Supervised contrastive (SupCon)",
          "simclr": "SimCLR (no labels)"}
DISTANCE_LABEL = "Euclidean distance of L2-normalised embeddings"
# --encoder auto on colour images: the network validation chose (benchmarks/RESULTS.md,
# "Network shapes for SupCon"); grey images keep the course's MLP
COLOUR_ENCODERS = {"contrastive": "resnet", "supcon": "airbench", "simclr": "resnet"}


def encoder_name(config: Config, image_shape: tuple[int, int, int]) -> str:
    return resolve_family(CONTRASTIVE_MODELS, config.encoder, image_shape, config.experiment,
                          colour=COLOUR_ENCODERS[config.experiment])


def build(config: Config, image_shape: tuple[int, int, int]) -> ContrastiveModel:
    encoder = encoder_name(config, image_shape)
    projection_dim = 0 if config.experiment == "contrastive" else PROJECTION_DIM
    options: dict[str, Any] = {}
    if config.width and encoder != "mlp":
        options["width"] = config.width
    # embeddings of encoders trained on mirrored images average each image with its mirror
    options["mirror"] = shared.augmentation_name(config, image_shape) != "none"
    torch.manual_seed(config.seed)
    return CONTRASTIVE_MODELS[encoder](image_shape, latent_dim=config.latent_dim,
                                       projection_dim=projection_dim, **options)


def training_views(config: Config, augmentation: str, image_shape: tuple[int, int, int]) -> Views:
    """The augmentation, then with --crop a random window of each view (SimCLR's random
    resized crop is made at that size instead) for the first --crop-until of the schedule:
    fewer pixels per step, so more epochs in a time budget; the encoder pools globally, so
    it still embeds whole images."""
    augment = AUGMENTATIONS[augmentation]
    if not config.crop:
        return Views(augment, augment, until=0.0)
    shared.check_crop_fits(config, image_shape)
    if encoder_name(config, image_shape) not in ("resnet", "airbench"):
        raise UserError("--crop needs --encoder resnet or airbench, which embed images of "
                        "any size")
    size = config.crop
    if augmentation == "simclr":
        return Views(augment, lambda images: simclr_augment(images, size=(size, size)),
                     config.crop_until)
    return windowed_views(augment, size, config.crop_until)


def make_step(config: Config, augment: Callable[[Tensor], Tensor]) -> TrainStep:
    """train_step(model, images, labels) -> {"loss"} for the configured method."""
    if config.experiment == "contrastive":
        def pair_step(model: ContrastiveModel, images: Tensor,
                      labels: Tensor) -> dict[str, Tensor]:
            z = model(augment(images))  # (B, D), each image embedded once
            first, second, is_positive = balanced_pairs(labels, PAIRS_PER_IMAGE * len(labels))
            device = z.device
            loss = margin_contrastive_loss(z[first.to(device)], z[second.to(device)],
                                           is_positive.to(device), config.margin)
            return {"loss": loss}
        return pair_step

    use_labels = config.experiment == "supcon"
    n_views = config.views or (1 if use_labels else 2)
    if n_views == 1 and not use_labels:
        raise UserError("--views 1 needs labels (supcon): SimCLR's positives are the other "
                        "view of the same image")

    def view_step(model: ContrastiveModel, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        b, v = len(images), n_views
        views = augment(images.repeat(v, 1, 1, 1))  # (V*B, C, H, W), each view its own draw
        z = model.project(views).view(v, b, -1).transpose(0, 1)  # (B, V, projection_dim)
        # under torchrun, negatives come from every process's batch
        z, labels = distributed.gather_with_gradient(z), distributed.gather_with_gradient(labels)
        return {"loss": supcon_loss(z, labels if use_labels else None, config.temperature)}
    return view_step


def whitening_sample(images: Tensor, seed: int) -> Tensor:
    """WHITENING_IMAGES of the training images drawn at random (all where there are fewer):
    not the first ones, since a folder dataset lists its images class by class."""
    return images[subsample(len(images), WHITENING_IMAGES, seed)]


class ValidationKnn:
    """An epoch_end hook: the validation split's kNN accuracy (k=20, cosine) against
    KNN_BANK seeded training images, as record["val_knn"], handed on to keep (the best
    weights). Plain embeddings at the training precision keep it a few seconds an epoch;
    it is a ranking of epochs, lower than a whole bank's score."""

    def __init__(self, model: ContrastiveModel, data: ImageData, config: Config,
                 keep: BestWeights) -> None:
        assert data.val_images is not None and data.val_labels is not None
        images, labels = data.bank()
        pick = subsample(len(labels), KNN_BANK, config.seed)
        self.bank = images[pick], labels[pick]
        self.val = data.val_images, data.val_labels
        self.model, self.keep = model, keep
        self.bf16 = use_bf16(config.precision, pick_device(config.device))

    @torch.no_grad()
    def __call__(self, epoch: int, record: dict[str, float]) -> bool:
        mirror, self.model.mirror = self.model.mirror, False
        device = next(self.model.parameters()).device
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                bank, val = embed_all(self.model, self.bank[0]), embed_all(self.model, self.val[0])
        finally:
            self.model.mirror = mirror
        record["val_knn"] = knn_accuracy(bank, self.bank[1], val, self.val[1])
        print(f"  validation kNN {record['val_knn']:.4f} (bank of {len(bank):,})", flush=True)
        return self.keep(epoch, record)


def run(config: Config, resume: bool = False) -> dict[str, Any]:
    name = config.experiment
    if name not in TITLES:
        raise UserError(f"{name} is not a contrastive method; choose {', '.join(TITLES)}")
    data = shared.load_data(config)
    model = build(config, data.image_shape)
    if isinstance(model, AirbenchContrastive) and not resume:
        model.fit_to_data(whitening_sample(data.train_images, config.seed))
    augmentation = shared.augmentation_name(config, data.image_shape)
    print(f"{TITLES[name]} with {augmentation} augmentation")
    views = training_views(config, augmentation, data.image_shape)
    step = make_step(config, views)
    # the epoch kept is the one whose validation kNN is best, not the last
    best = BestWeights(model, config, config.run_dir / f"best_{name}.pth", resume, key="val_knn")
    result = shared.train(model, shared.job(config, data, resume),
                          Steps(step, step, views.at, views.settles_at),
                          Hooks(epoch_end=ValidationKnn(model, data, config, best)))
    best.restore()
    metrics, _, _ = shared.evaluate_embeddings(model, data, config, name, TITLES[name])
    metrics.update(best_epoch=best.epoch, best_val_knn=best.score)
    saved = np.load(config.run_dir / "test_embeddings.npz")
    positive, negative = pair_distances(torch.from_numpy(saved["embeddings"]), data.test_labels,
                                        seed=config.seed)
    metrics.update(pair_metrics(positive, negative))
    loss_space = ("the loss's own distance" if name == "contrastive"
                  else "the loss uses cosine similarity of the projection head's output")
    plot_distance_histograms(
        [{"title": f"{TITLES[name]} (pair AUC {metrics['pair_auc']:.3f})", "positive": positive,
          "negative": negative, "xlabel": DISTANCE_LABEL,
          "margin": config.margin if name == "contrastive" else None}],
        config.run_dir / f"{name}_distances.png",
        f"Test-set pair distances ({loss_space})")
    loss_title = {"contrastive": f"Margin contrastive loss (margin {config.margin:g})",
                  "supcon": f"SupCon loss (temperature {config.temperature:g})",
                  "simclr": f"NT-Xent loss (temperature {config.temperature:g})"}[name]
    return shared.finish(model, config, data, result, name, metrics, title=loss_title)
