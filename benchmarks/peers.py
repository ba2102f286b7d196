"""Peers: latentlab beside the library a user would pick instead, for each task.

The same cores, the same images, the same wall-clock budget, and latentlab's own scoring for
both systems.

    python benchmarks/peers.py --tasks simclr supcon autoencoder vae separator --minutes 10 \\
        --seeds 2 --json benchmarks/results/peers.json
    python benchmarks/peers.py --tasks simclr --minutes 0.3 --seeds 1 --train-limit 1000 \\
        --json /tmp/peers-quick.json                              # a quick check

| task        | peer (PyPI)                 | score (latentlab's code, for both)                   |
|-------------|-----------------------------|------------------------------------------------------|
| simclr      | lightly                     | real-pixel kNN (k=20, cosine), linear probe          |
| supcon      | pytorch-metric-learning     | the same                                             |
| autoencoder | pythae (AE)                 | real-pixel reconstruction PSNR, kNN of the codes     |
| vae         | pythae (VAE)                | real-pixel bits/dim (negative ELBO)                  |
| separator   | segmentation-models-pytorch | PIT PSNR on real-pixel test mixtures, shortcut ratio |

Install the peers with `pip install -e '.[peers]'`; a task whose peer is missing ends in one
line saying so (exit code 2).

Data. simclr, supcon, autoencoder and vae train both systems on the CIFAR-10 JPEG copy
(--dataset) less the JPEG twins of the 5,085 official images (--twins) and less the seeded
validation split (latentlab.data.splits.training_data with `exclude`, as benchmarks/embeddings.py
does), and score on all official images (--official), never seen in either form. The kNN bank
and the linear probe's training set are the run's training split, embedded without test-time
flips for either system. The separator follows the README's pretrained recipe (official
images x13 beside the JPEG copy, less the twins of validation and test images) and is scored
on the fixed mixtures of the held-out official test images and of their JPEG twins (the
shortcut ratio, latentlab.metrics.separation).

Fairness. Each run alone, on the same threads (--threads), under the same precision policy
(bf16 autocast where the machine runs it natively, latentlab.devices.use_bf16; losses in
float32); training stops at --minutes of training time, and every schedule is compressed to
end there: latentlab's time budget ends its own schedule; each peer runs a time-budgeted loop
with its own optimiser and its own schedule stretched over the budget instead of over its
epochs. Each peer keeps its documented recipe (network, augmentation, optimiser, learning
rate, batch) and its data pipeline (its own transforms, on PIL images as torchvision's CIFAR10
gives them). What had to change to run each on 2 CPU cores:

- lightly (docs/source/getting_started/benchmarks/cifar10_benchmark.py): the CIFAR ResNet-18
  (ResNetGenerator('resnet-18'), its layers less the classifier plus adaptive pooling),
  SimCLRProjectionHead(512, 512, 128), NTXentLoss() (temperature 0.5), SimCLRTransform(
  input_size=32, gaussian_blur=0.0), batch 128, SGD lr 0.06 x batch/128, momentum 0.9,
  weight decay 5e-4, CosineAnnealingLR. Changed: a plain loop instead of the Lightning
  Trainer, the cosine over the budget instead of 200 epochs, DataLoader workers 8 -> 0 (the
  augmentation runs in the training process: workers would take cores from the 2 threads),
  and its kNN monitor (k=200) replaced by the common scoring of the backbone's 512 features.
- pytorch-metric-learning: SupConLoss() (temperature 0.1, its default and the paper's), with a
  torchvision ResNet-18 given the CIFAR stem (3x3 conv, stride 1, no max-pooling). The library
  documents no CIFAR recipe, so the rest is that of the SupCon reference implementation
  (HobbitLong/SupContrast, which its docs cite): two views of RandomResizedCrop(32, scale
  0.2-1), flips, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, grey with p 0.2, CIFAR-10
  normalisation; head 512 -> 512 -> 128; batch 256, SGD lr 0.05, momentum 0.9, weight decay
  1e-4; 10 warm-up epochs of 1,000 (from lr 0.01), cosine to lr/1000. Changed: ResNet-50 ->
  ResNet-18 (the issue), warm-up over the first 1% of the budget and the cosine over the rest,
  DataLoader workers 16 -> 0.
- pythae: AE and VAE with its CIFAR-10 networks (Encoder_Conv_AE_CIFAR / Encoder_Conv_VAE_CIFAR
  and Decoder_Conv_AE_CIFAR, the default of its examples/scripts/training.py), its CIFAR-10
  configs (latent_dim 16, the VAE's reconstruction_loss "mse"; training batch 100, Adam at
  1e-3, no scheduler, so a constant rate), its BaseTrainer's DataLoader over a BaseDataset of
  pixels in [0, 1] and the trainer's own optimiser (set_optimizer). Changed: its per-epoch
  loop (100 epochs, evaluation and checkpoints after each) replaced by the time-budgeted loop
  over its loader doing its trainer's step; its AMP (CUDA only) by bf16 autocast.
- segmentation-models-pytorch: Unet('resnet18', encoder_weights=None, in_channels=3,
  classes=6): the two images as 6 channels, trained with latentlab's permutation-invariant
  loss (log-MSE PIT, latentlab.losses.separation_objective) on the same fresh training
  mixtures each epoch (latentlab.data.mixtures); no augmentation (smp ships none); inputs
  normalised with the ImageNet mean and std, as its examples do; Adam at 2e-4 with a cosine
  to 1e-5 (its examples). Changed: batch 8 at 160x160 -> 64 at 32x32 (the same batch as
  latentlab's separator: 8 images of 32x32 would leave a step all overhead), DataLoader
  workers 64 -> 0 (the mixtures are made in the loop); outputs clamped to [0, 1] when scored;
  the last weights are scored (latentlab keeps its best validation epoch, part of its recipe).

bits/dim of pythae's VAE. Its decoder gives the mean of a Gaussian (its "mse" loss is a
Gaussian of variance 1). It is scored as a distribution over the 256 levels of each 8-bit
pixel channel: p(x|z) = Phi((x + 1/2 - mu)/sigma) - Phi((x - 1/2 - mu)/sigma) in pixel units
of 1/255, with the two end bins reaching to -inf and +inf (as latentlab's discretised
logistic does), one sigma for every pixel, fitted on the validation split: the sigma of a log
grid of 49 values from 0.001 to 1 with the lowest validation negative ELBO. The negative
ELBO is then KL(q(z|x) || N(0, I)) - log p(x|z) at one seeded z ~ q(z|x) per image, in bits
per dimension (/ 3072 ln 2), as latentlab.metrics.likelihood.elbo_metrics scores latentlab's VAE.

Rows are kept in --json as they finish (a list, written atomically); a row already there with
the same task, system, seed, minutes, train and test limits is not run again, so an
interrupted benchmark continues where it stopped. Prints mean +- std over seeds per task and
system, and latentlab/peer (peer/latentlab for bits/dim: above 1, latentlab is better). Run
folders go under --out."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from latentlab import checkpoint
from latentlab.config import Config
from latentlab.data import ImageData, load_dataset
from latentlab.data.mixtures import fixed_test_mixtures, training_mixtures
from latentlab.data.splits import training_data
from latentlab.data.twins import read_twin_images
from latentlab.devices import cpu_name, pick_device, use_bf16
from latentlab.errors import UserError
from latentlab.experiments import EXPERIMENTS
from latentlab.experiments.shared import code_version
from latentlab.experiments.vae import ElboStep
from latentlab.files import write_json_atomic
from latentlab.losses import bits_per_dim, gaussian_kl, separation_objective
from latentlab.metrics.embeddings import embed_all, knn_accuracy, linear_probe_accuracy, subsample
from latentlab.metrics.images import reconstruction_metrics
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.metrics.separation import score_mixtures as score_separator
from latentlab.metrics.separation import twin_scores as score_twins
from latentlab.models import ConvVAE
from latentlab.training import Job, Steps, fit
from latentlab.training.schedule import KLWarmup

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "datasets"
KNN = "real-pixel kNN accuracy (k=20, cosine)"


def sibling(name: str) -> Any:
    """Another benchmark script of this folder, as a module: its recipes and helpers are
    reused, not copied."""
    spec = importlib.util.spec_from_file_location(f"latentlab_benchmark_{name}",
                                                  HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


embeddings_benchmark = sibling("embeddings")


@dataclass(frozen=True)
class Task:
    peer: str  # the peer's PyPI name: the `system` of its rows
    module: str  # what it is imported as
    metric: str
    higher_is_better: bool


TASKS = {
    "simclr": Task("lightly", "lightly", KNN, True),
    "supcon": Task("pytorch-metric-learning", "pytorch_metric_learning", KNN, True),
    "autoencoder": Task("pythae", "pythae", "real-pixel reconstruction PSNR (dB)", True),
    "vae": Task("pythae", "pythae", "real-pixel bits/dim (negative ELBO)", False),
    "separator": Task("segmentation-models-pytorch", "segmentation_models_pytorch",
                      "PIT PSNR (dB), real-pixel test mixtures", True),
}
# latentlab's side: benchmarks/embeddings.py's recipes and defaults (width 16, 128-d, batch
# 256, AdamW at 2e-3, 3% warm-up of a 200-epoch ceiling that the time budget ends) ...
EMBEDDING_SETTINGS: dict[str, Any] = {"latent_dim": 128, "epochs": 200, "warmup_epochs": 6.0,
                                      "batch_size": 256, "learning_rate": 2e-3}
# ... benchmarks/vae.py's ConvVAE (256-d, width 32, causal context 32, batch 64, 2e-3) ...
VAE_SETTINGS: dict[str, Any] = {"latent_dim": 256, "width": 32, "context": 32, "batch_size": 64,
                                "learning_rate": 2e-3, "epochs": 1000, "warmup_epochs": 20.0}
# ... and the README's pretrained separator recipe (a width-32 U-Net)
SEPARATOR_SETTINGS: dict[str, Any] = {"model": "unet", "oversample": 13, "batch_size": 64,
                                      "epochs": 500, "warmup_epochs": 10.0}
# latentlab's embedding runs evaluate themselves on the way (metrics.json in their folders):
# a t-SNE map and scores on the JPEG copy's test split, which is part of no score here, so
# on a seeded 1,000 of its images
TSNE_POINTS, OWN_TEST_IMAGES = 500, 1000
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # SupContrast's
SIGMAS = torch.logspace(-3, 0, 49, dtype=torch.float64).tolist()  # pythae VAE's sigma grid
KEY = ("task", "system", "seed", "minutes", "train_limit", "test_limit")


@dataclass
class Result:
    """What one training run gives the row: its scores and how much it trained."""

    scores: dict[str, float]
    train_seconds: float
    images_seen: float  # training images (mixtures for the separator) through the network
    epoch_size: int  # training images per epoch
    recipe: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- shared parts

def peer_version(task: str) -> str:
    try:
        return importlib.metadata.version(TASKS[task].peer)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def check_peers(tasks: list[str]) -> None:
    """Every requested task's peer imports, else one line that says how to install it."""
    for task in tasks:
        try:
            importlib.import_module(TASKS[task].module)
        except ImportError:
            raise UserError(f"--tasks {task} compares with {TASKS[task].peer}, which is not "
                            "installed; install the peers with: pip install -e '.[peers]'"
                            ) from None


def check_files(args: argparse.Namespace) -> None:
    for option, path in (("--dataset", args.dataset), ("--official", args.official),
                         ("--twins", args.twins)):
        if not Path(path).exists():
            raise UserError(f"{option} {path} does not exist; give the CIFAR-10 JPEG copy, "
                            "the official images and their twins list (see --help)")


@functools.lru_cache(maxsize=2)
def real_pixels(official: str, limit: int | None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Every official image (both splits: none is seen in training, itself or as its twin),
    their labels and class names; a seeded subset of `limit` for quick checks."""
    data = load_dataset(f"folder:{official}")
    images = torch.cat([data.train_images, data.test_images])
    labels = torch.cat([data.train_labels, data.test_labels])
    if limit:
        keep = subsample(len(labels), limit)
        images, labels = images[keep], labels[keep]
    return images, labels, tuple(data.class_names)


def real_images(args: argparse.Namespace, data: ImageData) -> tuple[Tensor, Tensor]:
    images, labels, names = real_pixels(str(args.official), args.test_limit)
    if list(names) != data.class_names:
        raise UserError(f"--official {args.official} holds classes {list(names)}, but "
                        f"--dataset {args.dataset} holds {data.class_names}; they must match")
    return images, labels


def embedding_scores(model: Any, data: ImageData, real: tuple[Tensor, Tensor],
                     probe: bool = True) -> dict[str, float]:
    """Real-pixel kNN (and linear probe) with the run's training split as the bank."""
    bank_images, bank_labels = data.bank()
    bank = embed_all(model, bank_images)
    z = embed_all(model, real[0])
    scores = {"real_knn": knn_accuracy(bank, bank_labels, z, real[1])}
    if probe:
        scores["real_linear_probe"] = linear_probe_accuracy(bank, bank_labels, z, real[1])
    return scores


def autocast(device: torch.device) -> Any:
    """The precision policy of both systems: bf16 autocast where the device runs it natively."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16("auto", device))


def cosine(peak: float, floor: float = 0.0, warmup: float = 0.0,
           start: float = 0.0) -> Callable[[float], float]:
    """Learning rate at progress p in [0, 1]: cosine from peak to floor over the whole run
    (CosineAnnealingLR stretched over the budget); during the first `warmup` of it, a linear
    ramp from start to where the cosine is by then (SupContrast's warm-up)."""

    def at(p: float) -> float:
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))

    def rate(p: float) -> float:
        return start + (at(warmup) - start) * p / warmup if p < warmup else at(p)

    return rate


def train_for(minutes: float, batches: Callable[[int], Iterable[Any]],
              step: Callable[[Any], int], optimizer: torch.optim.Optimizer,
              rate: Callable[[float], float]) -> tuple[float, int]:
    """A peer's time-budgeted loop: epochs of batches(epoch), each step at rate(progress),
    progress being the share of the budget used; stops after the step that ends the budget.
    Returns the training seconds and the images the steps took."""
    budget, seen, epoch = minutes * 60, 0, 0
    started = time.perf_counter()
    while True:
        steps = 0
        for batch in batches(epoch):
            for group in optimizer.param_groups:
                group["lr"] = rate((time.perf_counter() - started) / budget)
            seen += step(batch)
            steps += 1
            if time.perf_counter() - started >= budget:
                return time.perf_counter() - started, seen
        if not steps:
            raise UserError("too few training images for one batch; raise --train-limit")
        epoch += 1


def trained(run_dir: Path) -> tuple[float, float]:
    """Training seconds and images seen of a finished latentlab run, from its history."""
    history = json.loads((run_dir / "history.json").read_text())
    return (sum(h["seconds"] for h in history),
            sum(h["images_per_second"] * h["seconds"] for h in history))


class PILImages(torch.utils.data.Dataset):
    """(N, C, H, W) uint8 images as PIL images with their labels, as torchvision's CIFAR10
    hands them to a transform."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Any = None) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index])
        return (self.transform(image) if self.transform else image), self.labels[index]


class Encoder:
    """A peer's encoder as latentlab's scoring calls a model: embed(uint8 images) -> (N, D),
    in float32 like latentlab's own embed; reconstruct() where a decoder is given."""

    def __init__(self, module: nn.Module, encode: Callable[[Tensor], Tensor],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 decode: Callable[[Tensor], Tensor] | None = None) -> None:
        self.module, self.encode, self.decode = module, encode, decode
        device = next(module.parameters()).device
        self.device = device
        self.mean = None if mean is None else torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std, device=device).view(1, 3, 1, 1)

    def eval(self) -> Encoder:
        self.module.eval()
        return self

    def inputs(self, images: Tensor) -> Tensor:
        x = images.to(self.device).float() / 255
        return x if self.mean is None or self.std is None else (x - self.mean) / self.std

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self.encode(self.inputs(images)).float().flatten(1)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        assert self.decode is not None
        self.module.eval()
        return self.decode(self.encode(self.inputs(images))).float().clamp(0, 1)


# ----------------------------------------------------------------------------- latentlab

def embedding_config(task: str, seed: int, args: argparse.Namespace, folder: Path) -> Config:
    """The latentlab run of simclr, supcon or autoencoder (benchmarks/embeddings.py's recipe);
    its training data is the peer's too."""
    recipe = dict(embeddings_benchmark.RECIPES[task])
    if task != "autoencoder":
        recipe.setdefault("width", 16)
    return Config(experiment=task, dataset=f"folder:{args.dataset}", exclude=str(args.twins),
                  time_budget=args.minutes, seed=seed, device=args.device,
                  train_limit=args.train_limit, test_limit=min(args.test_limit or
                                                               OWN_TEST_IMAGES, OWN_TEST_IMAGES),
                  tsne_points=TSNE_POINTS, out=str(folder), **EMBEDDING_SETTINGS,
                  **recipe).validate()


def separator_config(seed: int, args: argparse.Namespace, folder: Path) -> Config:
    """The README's pretrained separator recipe; the peer trains on the same data."""
    return Config(experiment="separator", dataset=f"folder:{args.official}",
                  extra_train=f"folder:{args.dataset}", time_budget=args.minutes, seed=seed,
                  device=args.device, train_limit=args.train_limit, test_limit=args.test_limit,
                  out=str(folder), **SEPARATOR_SETTINGS).validate()


def latentlab_embeddings(task: str, seed: int, args: argparse.Namespace,
                         folder: Path) -> Result:
    config = embedding_config(task, seed, args, folder)
    EXPERIMENTS[task](config, False)
    model = checkpoint.load(config.run_dir / f"{task}_model.pth")
    if hasattr(model, "mirror"):
        model.mirror = False  # no test-time flips: the peer's embeddings have none either
    data = training_data(config)
    real = real_images(args, data)
    if task == "autoencoder":
        scores = embedding_scores(model, data, real, probe=False)
        reconstructions = torch.cat([model.reconstruct(real[0][i: i + 500]).cpu()
                                     for i in range(0, len(real[0]), 500)])
        scores["real_psnr"] = reconstruction_metrics(
            reconstructions, real[0].float() / 255)["reconstruction_psnr"]
    else:
        scores = embedding_scores(model, data, real)
    return Result(scores, *trained(config.run_dir), len(data.train_labels),
                  {k: v for k, v in config.to_dict().items() if k in (
                      "encoder", "width", "latent_dim", "batch_size", "learning_rate",
                      "augmentation", "temperature", "crop")})


def vae_config(seed: int, args: argparse.Namespace, folder: Path) -> Config:
    """latentlab's VAE run, on the embeddings' training data; the peer's data too."""
    settings = {k: v for k, v in VAE_SETTINGS.items() if k not in ("width", "context")}
    return Config(experiment="vae", dataset=f"folder:{args.dataset}", exclude=str(args.twins),
                  time_budget=args.minutes, seed=seed, device=args.device,
                  train_limit=args.train_limit, test_limit=args.test_limit, out=str(folder),
                  **settings).validate()


def latentlab_vae(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    """benchmarks/vae.py's ConvVAE, trained as that script trains it."""
    config = vae_config(seed, args, folder)
    data = training_data(config)
    assert data.val_images is not None and data.val_labels is not None
    torch.manual_seed(seed)
    model = ConvVAE(data.image_shape, VAE_SETTINGS["latent_dim"], VAE_SETTINGS["width"],
                    VAE_SETTINGS["context"])
    step = ElboStep(KLWarmup(1.0, 0, 1))
    with tempfile.TemporaryDirectory() as scratch:
        job = Job(config, (data.train_images, data.train_labels),
                  (data.val_images, data.val_labels), Path(scratch) / "checkpoint.pth")
        result = fit(model, job, Steps(step, step))
    metrics = elbo_metrics(model, real_images(args, data)[0], seed)
    seen = sum(h["images_per_second"] * h["seconds"] for h in result.history)
    return Result({"real_bits_per_dim": metrics["test_bits_per_dim"],
                   "real_kl_nats": metrics["test_kl"]}, result.train_seconds, seen,
                  len(data.train_labels), dict(VAE_SETTINGS))


def separator_scores(metrics: dict[str, Any]) -> dict[str, float]:
    scores = {"real_psnr": metrics["test_psnr"],
              "mixture_psnr": metrics["baseline_average_psnr"],
              "real_ssim": metrics["test_ssim"]}
    if "shortcut_ratio" in metrics:
        scores["shortcut_ratio"] = metrics["shortcut_ratio"]
        scores["jpeg_twins_psnr"] = metrics["jpeg_twins"]["test_psnr"]
    return scores


def latentlab_separator(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    config = separator_config(seed, args, folder)
    metrics = EXPERIMENTS["separator"](config, False)
    data = training_data(config)
    return Result(separator_scores(metrics), *trained(config.run_dir), len(data.train_labels),
                  dict(SEPARATOR_SETTINGS))


# ----------------------------------------------------------------------------- the peers

def lightly_simclr(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    from lightly.data import LightlyDataset
    from lightly.loss import NTXentLoss
    from lightly.models import ResNetGenerator
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    data = training_data(embedding_config("simclr", seed, args, folder))
    device = pick_device(args.device)
    torch.manual_seed(seed)
    resnet = ResNetGenerator("resnet-18")
    backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)).to(device)
    head = SimCLRProjectionHead(512, 512, 128).to(device)
    criterion = NTXentLoss()
    dataset = LightlyDataset.from_torch_dataset(
        PILImages(data.train_images, data.train_labels),
        transform=SimCLRTransform(input_size=32, gaussian_blur=0.0))
    batch = min(128, len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    parameters = list(backbone.parameters()) + list(head.parameters())
    lr = 6e-2 * batch / 128
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=5e-4)

    def step(batch_: Any) -> int:
        (x0, x1), _, _ = batch_
        with autocast(device):
            z0 = head(backbone(x0.to(device)).flatten(1))
            z1 = head(backbone(x1.to(device)).flatten(1))
        loss = criterion(z0.float(), z1.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(x0)

    backbone.train()
    head.train()
    seconds, seen = train_for(args.minutes, lambda epoch: loader, step, optimizer, cosine(lr))
    encoder = Encoder(backbone, backbone, IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])
    scores = embedding_scores(encoder, data, real_images(args, data))
    return Result(scores, seconds, seen, len(data.train_labels),
                  {"network": "ResNetGenerator('resnet-18')", "head": "512-512-128",
                   "loss": "NTXentLoss(temperature=0.5)", "batch_size": batch,
                   "optimizer": f"SGD lr {lr:g} momentum 0.9 wd 5e-4, cosine",
                   "augmentation": "SimCLRTransform(input_size=32, gaussian_blur=0.0)"})


class TwoViews:
    """SupContrast's TwoCropTransform: two independent draws of the transform."""

    def __init__(self, transform: Callable[[Any], Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> list[Tensor]:
        return [self.transform(image), self.transform(image)]


def metric_learning_supcon(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    import torchvision
    from pytorch_metric_learning.losses import SupConLoss
    from torchvision import transforms as T

    data = training_data(embedding_config("supcon", seed, args, folder))
    device = pick_device(args.device)
    torch.manual_seed(seed)
    backbone = torchvision.models.resnet18()
    backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    backbone.maxpool = nn.Identity()
    backbone.fc = nn.Identity()
    backbone.to(device)
    head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 128))
    head.to(device)
    criterion = SupConLoss(temperature=0.1)
    transform = T.Compose([
        T.RandomResizedCrop(32, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
        T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = PILImages(data.train_images, data.train_labels, TwoViews(transform))
    batch = min(256, len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    lr = 0.05
    parameters = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4)

    def step(batch_: Any) -> int:
        views, labels = batch_
        with autocast(device):
            z = head(backbone(torch.cat(views).to(device)))
        z = F.normalize(z.float(), dim=1)
        loss = criterion(z, torch.cat([labels, labels]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(labels)

    backbone.train()
    head.train()
    seconds, seen = train_for(args.minutes, lambda epoch: loader, step, optimizer,
                              cosine(lr, floor=lr * 1e-3, warmup=0.01, start=0.01))
    scores = embedding_scores(Encoder(backbone, backbone, CIFAR_MEAN, CIFAR_STD), data,
                              real_images(args, data))
    return Result(scores, seconds, seen, len(data.train_labels),
                  {"network": "torchvision resnet18, 3x3 stride-1 stem, no max-pooling",
                   "head": "512-512-128", "loss": "SupConLoss(temperature=0.1)",
                   "batch_size": batch,
                   "optimizer": f"SGD lr {lr:g} momentum 0.9 wd 1e-4, 1% warm-up, cosine",
                   "augmentation": "SupContrast's CIFAR views"})


def pythae_model(task: str, seed: int, args: argparse.Namespace, data: ImageData,
                 scratch: str) -> tuple[Any, Any]:
    """pythae's AE or VAE with its CIFAR-10 networks and configs, and its trainer."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import AE, VAE, AEConfig, VAEConfig
    from pythae.models.nn.benchmarks.cifar import (
        Decoder_Conv_AE_CIFAR,
        Encoder_Conv_AE_CIFAR,
        Encoder_Conv_VAE_CIFAR,
    )
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    torch.manual_seed(seed)
    shape = data.image_shape
    model: Any
    if task == "autoencoder":
        ae_config = AEConfig(input_dim=shape, latent_dim=16)
        model = AE(ae_config, encoder=Encoder_Conv_AE_CIFAR(ae_config),
                   decoder=Decoder_Conv_AE_CIFAR(ae_config))
    else:
        vae_config = VAEConfig(input_dim=shape, latent_dim=16, reconstruction_loss="mse")
        model = VAE(vae_config, encoder=Encoder_Conv_VAE_CIFAR(vae_config),
                    decoder=Decoder_Conv_AE_CIFAR(vae_config))
    device = pick_device(args.device)
    trainer_config = BaseTrainerConfig(
        output_dir=scratch, per_device_train_batch_size=min(100, len(data.train_labels)),
        learning_rate=1e-3, num_epochs=100, seed=seed, no_cuda=device.type != "cuda")
    trainer = BaseTrainer(model, BaseDataset(data.train_images.float() / 255, data.train_labels),
                          training_config=trainer_config)
    trainer.set_optimizer()  # its Adam at 1e-3; its CIFAR-10 config has no scheduler
    return trainer.model, trainer


def train_pythae(model: Any, trainer: Any, args: argparse.Namespace) -> tuple[float, int]:
    """Its trainer's step (model(inputs) -> loss, backward, its optimiser) over its own
    loader, time-budgeted."""
    device = pick_device(args.device)
    optimizer = trainer.optimizer
    n = len(trainer.train_loader.dataset)

    def step(inputs: Any) -> int:
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        with autocast(device):
            output = model(inputs, epoch=1, dataset_size=n, uses_ddp=False)
        optimizer.zero_grad()
        output.loss.float().backward()
        optimizer.step()
        return len(inputs["data"])

    model.train()
    rate = trainer.training_config.learning_rate
    return train_for(args.minutes, lambda epoch: trainer.train_loader, step, optimizer,
                     lambda progress: rate)


def pythae_autoencoder(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    data = training_data(embedding_config("autoencoder", seed, args, folder))
    with tempfile.TemporaryDirectory() as scratch:
        model, trainer = pythae_model("autoencoder", seed, args, data, scratch)
        seconds, seen = train_pythae(model, trainer, args)
    encoder = Encoder(model, lambda x: model.encoder(x).embedding,
                      decode=lambda z: model.decoder(z)["reconstruction"])
    real = real_images(args, data)
    scores = embedding_scores(encoder, data, real, probe=False)
    reconstructions = torch.cat([encoder.reconstruct(real[0][i: i + 500]).cpu()
                                 for i in range(0, len(real[0]), 500)])
    scores["real_psnr"] = reconstruction_metrics(
        reconstructions, real[0].float() / 255)["reconstruction_psnr"]
    return Result(scores, seconds, seen, len(data.train_labels),
                  {"network": "Encoder_Conv_AE_CIFAR / Decoder_Conv_AE_CIFAR", "latent_dim": 16,
                   "batch_size": trainer.training_config.per_device_train_batch_size,
                   "optimizer": "Adam lr 1e-3, constant"})


def discretised_gaussian_log_likelihood(pixels: Tensor, mean: Tensor, sigma: float) -> Tensor:
    """log P(x) in nats of 8-bit pixels x (uint8) under a Gaussian of the given mean (pixel
    units: [0, 1]) and standard deviation, discretised into the 256 levels: the mass of
    [x - 1/2, x + 1/2] / 255, with the end bins reaching to -inf and +inf so the 256
    probabilities sum to one. Shapes as pixels; computed in float64 from the tail where the
    difference of the two normal CDFs is accurate."""
    k, mean = pixels.double(), mean.double()
    lower = torch.where(k > 0, (k - 0.5) / 255, -math.inf)
    upper = torch.where(k < 255, (k + 0.5) / 255, math.inf)
    a, b = (lower - mean) / sigma, (upper - mean) / sigma
    flip = a > 0  # in the upper tail, Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_b = torch.special.log_ndtr(b)
    d = torch.special.log_ndtr(a) - log_b  # <= 0: log(Phi(a) / Phi(b))
    log1m = torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))
    return log_b + log1m


@torch.no_grad()
def gaussian_negative_elbo(model: Any, images: Tensor, sigmas: list[float], seed: int,
                           batch_size: int = 500) -> Tensor:
    """(S, N) negative ELBO in nats of each image under each sigma: KL plus -log p(x|z) at
    one seeded z ~ q(z|x) per image (the same z for every sigma)."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    parts = []
    for start in range(0, len(images), batch_size):
        pixels = images[start: start + batch_size].to(device)
        encoded = model.encoder(pixels.float() / 255)
        mean, log_variance = encoded.embedding.float(), encoded.log_covariance.float()
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        decoded = model.decoder(z)["reconstruction"].float()
        kl = gaussian_kl(mean, log_variance).double()
        nll = torch.stack([-discretised_gaussian_log_likelihood(pixels, decoded, s).flatten(1)
                           .sum(1) for s in sigmas])
        parts.append((nll + kl).cpu())
    return torch.cat(parts, 1)


def pythae_vae(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    data = training_data(vae_config(seed, args, folder))
    assert data.val_images is not None
    with tempfile.TemporaryDirectory() as scratch:
        model, trainer = pythae_model("vae", seed, args, data, scratch)
        seconds, seen = train_pythae(model, trainer, args)
    validation = gaussian_negative_elbo(model, data.val_images, SIGMAS, seed).mean(1)
    sigma = SIGMAS[int(validation.argmin())]
    real = gaussian_negative_elbo(model, real_images(args, data)[0], [sigma], seed)[0]
    dims = math.prod(data.image_shape)
    return Result({"real_bits_per_dim": float(bits_per_dim(real, dims).mean()),
                   "validation_bits_per_dim": float(validation.min()) / (dims * math.log(2)),
                   "sigma": sigma}, seconds, seen, len(data.train_labels),
                  {"network": "Encoder_Conv_VAE_CIFAR / Decoder_Conv_AE_CIFAR",
                   "latent_dim": 16, "reconstruction_loss": "mse",
                   "batch_size": trainer.training_config.per_device_train_batch_size,
                   "optimizer": "Adam lr 1e-3, constant",
                   "likelihood": "discretised Gaussian, sigma fitted on validation"})


class PeerSeparator:
    """An image-to-image network giving both images as 6 channels, as latentlab's separator
    scoring calls a separator: separate(mixtures) -> (x1_hat, x2_hat), clamped to [0, 1];
    trained under the precision policy, scored in float32 (as latentlab's separators are)."""

    def __init__(self, net: nn.Module, device: torch.device) -> None:
        self.net, self.device = net, device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def forward(self, m: Tensor, precision: bool = True) -> tuple[Tensor, Tensor]:
        with autocast(self.device) if precision else contextlib.nullcontext():
            out = self.net((m - self.mean) / self.std)
        out = out.float()
        return out[:, :3], out[:, 3:]

    def eval(self) -> PeerSeparator:
        self.net.eval()
        return self

    @torch.no_grad()
    def separate(self, mixtures: Tensor) -> tuple[Tensor, Tensor]:
        first, second = self.forward(mixtures.to(self.device).float(), precision=False)
        return first.clamp(0, 1), second.clamp(0, 1)


def smp_separator(seed: int, args: argparse.Namespace, folder: Path) -> Result:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights None: nothing to fetch, ever
    import segmentation_models_pytorch as smp

    config = separator_config(seed, args, folder)
    data = training_data(config)
    device = pick_device(args.device)
    train = training_mixtures(data.train_images, "full", seed)
    test = fixed_test_mixtures(data.test_images)
    torch.manual_seed(seed)
    net = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=6)
    separator = PeerSeparator(net.to(device), device)
    lr = 2e-4
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    batch = min(64, len(train))
    order = torch.Generator().manual_seed(seed)

    def batches(epoch: int) -> Iterable[Tensor]:
        train.resample(epoch)  # fresh partners every epoch, as latentlab's training has
        shuffled = torch.randperm(len(train), generator=order)
        return (shuffled[i: i + batch] for i in range(0, len(train) - batch + 1, batch))

    def step(index: Tensor) -> int:
        sources = train.sources(index).to(device).float() / 255
        x1, x2 = sources[:, 0], sources[:, 1]
        first, second = separator.forward((x1 + x2) / 2)
        loss = separation_objective(first, second, x1, x2, first.new_zeros(len(first)),
                                    None)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(index)

    net.train()
    seconds, seen = train_for(args.minutes, batches, step, optimizer, cosine(lr, floor=1e-5))
    metrics = score_separator(separator, test)
    twins = read_twin_images(config.dataset, data.test_names)
    if twins is not None:
        metrics.update(score_twins(separator, test, twins, metrics))
    return Result(separator_scores(metrics), seconds, seen, len(data.train_labels),
                  {"network": "smp.Unet('resnet18', encoder_weights=None, classes=6)",
                   "loss": "latentlab's PIT log-MSE", "batch_size": batch,
                   "optimizer": f"Adam lr {lr:g}, cosine to 1e-5",
                   "normalisation": "ImageNet mean/std"})


RUNNERS: dict[tuple[str, str], Callable[[int, argparse.Namespace, Path], Result]] = {
    ("simclr", "latentlab"): functools.partial(latentlab_embeddings, "simclr"),
    ("supcon", "latentlab"): functools.partial(latentlab_embeddings, "supcon"),
    ("autoencoder", "latentlab"): functools.partial(latentlab_embeddings, "autoencoder"),
    ("vae", "latentlab"): latentlab_vae,
    ("separator", "latentlab"): latentlab_separator,
    ("simclr", "peer"): lightly_simclr,
    ("supcon", "peer"): metric_learning_supcon,
    ("autoencoder", "peer"): pythae_autoencoder,
    ("vae", "peer"): pythae_vae,
    ("separator", "peer"): smp_separator,
}
MAIN_SCORE = {"simclr": "real_knn", "supcon": "real_knn", "autoencoder": "real_psnr",
              "vae": "real_bits_per_dim", "separator": "real_psnr"}


# ----------------------------------------------------------------------------- the runs

def finite(value: Any) -> Any:
    """JSON has no NaN: a score that could not be computed is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_one(task: str, system: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    limits = "".join(f"-{name}{value}" for name, value in (
        ("train", args.train_limit), ("test", args.test_limit)) if value)
    folder = Path(args.out) / f"{task}-{system}-{args.minutes:g}min{limits}-seed{seed}"
    print(f"\n=== {task}: {system}, seed {seed}, {args.minutes:g} min ===", flush=True)
    started = time.perf_counter()
    result = RUNNERS[task, "latentlab" if system == "latentlab" else "peer"](seed, args, folder)
    device = pick_device(args.device)
    spec = TASKS[task]
    return {
        "task": task, "system": system, "seed": seed, "minutes": args.minutes,
        "train_limit": args.train_limit, "test_limit": args.test_limit,
        "score": finite(result.scores[MAIN_SCORE[task]]), "metric": spec.metric,
        "higher_is_better": spec.higher_is_better,
        "epochs": round(result.images_seen / max(result.epoch_size, 1), 3),
        "images_per_second": round(result.images_seen / max(result.train_seconds, 1e-9), 1),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "scores": {key: finite(value) for key, value in result.scores.items()},
        "version": code_version() if system == "latentlab" else peer_version(task),
        "recipe": result.recipe, "machine": cpu_name(),
        "device": str(device), "threads": torch.get_num_threads(),
        "precision": "bf16" if use_bf16("auto", device) else "fp32",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def same_run(row: dict[str, Any], key: dict[str, Any]) -> bool:
    return all(row.get(name) == value for name, value in key.items())


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """Above 1, latentlab is better: latentlab/peer, or peer/latentlab for lower-is-better."""
    if not (ours and theirs):
        return float("nan")
    return ours / theirs if higher_is_better else theirs / ours


def print_table(rows: list[dict[str, Any]]) -> None:
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["task"], row["minutes"], row["train_limit"], row["test_limit"], row["system"])
        cells.setdefault(key, []).append(row)
    header = (f"{'task':<12}{'system':<29}{'min':>6}{'seeds':>6}{'epochs':>8}{'img/s':>8}"
              f"{'score':>17}{'latentlab/peer':>16}  more")
    print("\n" + header + "\n" + "-" * len(header))
    order = list(TASKS)
    for key in sorted(cells, key=lambda k: (order.index(k[0]), k[1], k[2] or 0, k[3] or 0,
                                            k[4] != "latentlab")):
        task, minutes, train_limit, test_limit, system = key
        group = cells[key]
        scores = [r["score"] for r in group if r["score"] is not None]
        mean = statistics.mean(scores) if scores else float("nan")
        compared = ""
        if system != "latentlab":
            ours = [r["score"] for r in cells.get((*key[:4], "latentlab"), [])
                    if r["score"] is not None]
            if ours and scores:
                value = ratio(statistics.mean(ours), mean, TASKS[task].higher_is_better)
                compared = f"{value:.3f}"
        more = ", ".join(
            f"{name} {statistics.mean(values):.3f}" for name in group[0]["scores"]
            if name != MAIN_SCORE[task]
            and (values := [r["scores"][name] for r in group if r["scores"].get(name) is not None]))
        limits = "".join(f" {name} {value}" for name, value in (
            ("train", train_limit), ("test", test_limit)) if value)
        print(f"{task:<12}{system:<29}{minutes:>6g}{len(group):>6}"
              f"{statistics.mean(r['epochs'] for r in group):>8.2f}"
              f"{statistics.mean(r['images_per_second'] for r in group):>8.0f}"
              f"{embeddings_benchmark.mean_std(scores):>17}{compared:>16}  {more}{limits}",
              flush=True)
    print("scores: " + "; ".join(
        f"{task}: {spec.metric}, {'higher' if spec.higher_is_better else 'lower'} is better"
        for task, spec in TASKS.items()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="training budget of every run (default 10)")
    parser.add_argument("--seeds", type=int, default=2, help="runs per task and system")
    parser.add_argument("--json", default=str(HERE / "results" / "peers.json"),
                        help="finished rows, kept between invocations")
    parser.add_argument("--train-limit", type=int, help="quick checks only")
    parser.add_argument("--test-limit", type=int,
                        help="quick checks only: also limits the real-pixel images scored")
    parser.add_argument("--dataset", default=str(SHARED / "cifar10-jpeg.zip"),
                        help="the CIFAR-10 JPEG copy (folder or zip)")
    parser.add_argument("--official", default=str(SHARED / "cifar10-official-5k.zip"),
                        help="official CIFAR-10 images, real pixels (folder or zip)")
    parser.add_argument("--twins", default=None,
                        help="their JPEG twins list (default: <official>-jpeg-twins.txt "
                             "beside --official, where the separator also looks for it)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--out", default=str(HERE / "runs" / "peers"), help="run folders")
    args = parser.parse_args(argv)
    if args.twins is None:
        official = Path(args.official)
        args.twins = str(official.parent / f"{official.name.removesuffix('.zip')}-jpeg-twins.txt")
    if args.minutes <= 0 or args.seeds < 1 or args.threads < 1:
        parser.error("--minutes, --seeds and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = Path(args.json)
    threads = torch.get_num_threads()
    try:
        check_peers(args.tasks)
        check_files(args)
        torch.set_num_threads(args.threads)
        try:
            rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
        except json.JSONDecodeError as error:
            raise UserError(f"--json {path} is not a JSON list of rows ({error})") from None
        for task in args.tasks:
            for seed in range(args.seeds):
                for system in ("latentlab", TASKS[task].peer):
                    key = dict(zip(KEY, (task, system, seed, args.minutes, args.train_limit,
                                         args.test_limit)))
                    if any(same_run(row, key) for row in rows):
                        print(f"{task}: {system}, seed {seed}: already in {path}")
                        continue
                    rows.append(run_one(task, system, seed, args))
                    write_json_atomic(rows, path)
    except UserError as error:
        print(f"peers benchmark: error: {error}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print_table([r for r in rows if r["task"] in args.tasks])
    return 0


if __name__ == "__main__":
    sys.exit(main())
