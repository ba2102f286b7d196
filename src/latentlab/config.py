"""Typed run configuration: defaults in code, overridable from a TOML file and the command line."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentlab.errors import UserError

# Which experiments use each option; "all" means every `latentlab train` command.
ALL = ("autoencoder", "contrastive", "supcon", "simclr", "vae", "separator")
EMBEDDING = ("autoencoder", "contrastive", "supcon", "simclr", "vae")
CONTRASTIVE = ("contrastive", "supcon", "simclr")


# The smallest batch each experiment can train on, and why (the others train on any size).
MIN_BATCH_SIZE = {
    "contrastive": (2, "its margin loss pairs the images of each batch with each other"),
    "supcon": (2, "its loss contrasts the images of each batch, and its projection head has "
                  "batch norm, which needs two or more images per step"),
    "simclr": (2, "its loss contrasts the images of each batch, and its projection head has "
                  "batch norm, which needs two or more images per step"),
    "separator": (2, "its networks have batch norm, which needs two or more images per step"),
}
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit


def min_batch_size(experiment: str) -> int:
    return MIN_BATCH_SIZE.get(experiment, (1, ""))[0]


def option(default: Any, help: str, used_by: tuple[str, ...] = ALL, choices: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "used_by": used_by, "choices": choices})


@dataclass
class Config:
    """Everything a training run needs. Saved into every checkpoint and results folder."""

    experiment: str = option("autoencoder", "which model family to train", choices=ALL)
    dataset: str = option("cifar10", "cifar10 | fashion-mnist | mnist | digits | folder:PATH")
    data_dir: str | None = option(None, "directory searched first for official dataset files")
    encoder: str = option(
        "auto", "network family: mlp, conv, resnet, airbench (contrastive only) or auto "
        "(colour: airbench for supcon, resnet for contrastive and simclr, conv for the "
        "others; grey: mlp)",
        used_by=EMBEDDING, choices=("auto", "mlp", "conv", "resnet", "airbench"),
    )
    latent_dim: int = option(32, "size of the embedding / latent vector", used_by=EMBEDDING)
    epochs: int = option(10, "passes over the training data")
    batch_size: int = option(256, "images per optimisation step")
    learning_rate: float = option(2e-3, "peak AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    ema: float = option(0.0, "decay of an exponential moving average of the weights, which "
                        "is evaluated and kept instead of the last weights (e.g. 0.999); 0: off")
    warmup_epochs: float = option(0.5, "linear learning-rate warm-up before cosine decay")
    seed: int = option(0, "seed for weights, data order and augmentation")
    test_seed: int = option(0, "seed of the test images held out of a dataset without split "
                            "folders (and of --test-limit's subset): kept apart from --seed, "
                            "so runs with several seeds are scored on the same images")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    precision: str = option("auto", "auto (bf16 autocast where the hardware runs bf16 "
                            "natively: recent GPUs, CPUs with AVX-512 BF16 or AMX; else fp32), "
                            "fp32 or bf16", choices=("auto", "fp32", "bf16"))
    compile: str = option("off", "torch.compile the training step (pays off on GPUs for long "
                          "runs)", choices=("on", "off"))
    train_limit: int | None = option(None, "use only this many training images (quick runs)")
    test_limit: int | None = option(None, "use only this many test images (quick runs)")
    tsne_points: int = option(2000, "test points shown in the t-SNE map", used_by=EMBEDDING)
    validation: int | None = option(
        None, "training images held out, seeded, to choose on (best weights, the end of a time "
        "budget); the test split is scored once, at the end (default: 5,000 from 40,000 "
        "training images on, else 10%%)")
    exclude: str | None = option(
        None, "text file of image names (paths inside a folder dataset, or their ends, any "
        "number per line) kept out of training and validation")
    extra_train: str | None = option(
        None, "a second dataset whose training images join the training set (e.g. the JPEG "
        "copy beside official pixels); those listed by --exclude, and the twins of validation "
        "and test images named in a twins file beside either dataset, are left out")
    oversample: int = option(
        1, "each of --dataset's own training images counts this many times per epoch (to "
        "weigh them against --extra-train images)")
    time_budget: float | None = option(
        None, "stop cleanly after this many minutes of training, keeping the best checkpoint"
    )
    # contrastive family
    margin: float = option(1.0, "margin of the pairwise contrastive loss", used_by=("contrastive",))
    temperature: float = option(0.1, "softmax temperature of SupCon / NT-Xent", used_by=CONTRASTIVE)
    views: int = option(0, "augmented views of each image per step: 1 (SupCon only: the "
                        "other images of its class in the batch are its positives; half the "
                        "compute per image) or 2; 0: 1 for supcon, 2 for simclr",
                        used_by=("supcon", "simclr"), choices=(0, 1, 2))
    augmentation: str = option(
        "auto", "batch augmentation: none, flips, light (flips, 4-pixel shifts), shifts (flips, "
        "4-pixel shifts with mirrored edges) or simclr (crops, flips, colour jitter, "
        "greyscale); auto: simclr for simclr, light for other contrastive runs on colour "
        "images, flips of each source for separators (shifts on the assignment protocol), else "
        "none",
        used_by=CONTRASTIVE + ("separator",),
        choices=("auto", "none", "flips", "light", "shifts", "simclr"))
    width: int = option(0, "channels of the first conv layer (0: the model's own default)",
                        used_by=CONTRASTIVE + ("separator",))
    crop: int = option(0, "train on views of crop x crop pixels (8 or more; a resnet or "
                       "airbench encoder, a unet or resunet separator): a random window of "
                       "each augmented image, or with simclr augmentation its random resized "
                       "crop made at that size; 24x24 costs about 60%% of 32x32, so a time "
                       "budget buys more epochs; embeddings and separations are always of "
                       "whole images; 0: whole images", used_by=CONTRASTIVE + ("separator",))
    crop_until: float = option(1.0, "with --crop, the part of the schedule (0 to 1] trained "
                               "on those views, whole images after it (progressive resizing); "
                               "1: the whole run", used_by=CONTRASTIVE + ("separator",))
    # variational autoencoder
    beta: float = option(1.0, "weight of the KL term", used_by=("vae", "separator"))
    kl_warmup_epochs: float = option(0.0, "epochs over which the KL weight ramps up from 0",
                                     used_by=("vae", "separator"))
    # separation
    model: str = option("unet", "separator architecture", used_by=("separator",))
    protocol: str = option("full", "assignment (1,000 images, 45,000 pairs) or full",
                           used_by=("separator",), choices=("assignment", "full"))
    bottleneck_blocks: int = option(
        0, "residual blocks added at the U-Net's lowest resolution (unet only); with "
        "--init-from, a trained U-Net grows into the deeper one", used_by=("separator",))
    class_weight: float = option(
        0.0, "weight of an auxiliary task for the unet separator: a linear head on its "
        "bottleneck names the classes of the two images (multi-label cross-entropy); 0: off",
        used_by=("separator",))
    init_from: str | None = option(
        None, "start from the weights of this separator_model.pth (same --model and --width; "
        "a U-Net's --width and --bottleneck-blocks may grow, keeping what it computes) "
        "with a fresh optimiser and schedule: train further after a finished run",
        used_by=("separator",))
    out: str = option("results", "folder that results are written under")
    tensorboard: bool = option(False, "also write training curves as TensorBoard event files "
                               "(needs pip install 'latentlab[tensorboard]')")

    def validate(self) -> Config:
        """Check every value before any work starts; raise UserError naming the bad one."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise UserError(f"--{dashed(f.name)} must be one of {', '.join(choices)}, "
                                f"not {value!r}")
        positive_ints = ("latent_dim", "epochs", "batch_size", "tsne_points", "oversample")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise UserError(f"--{dashed(name)} must be a positive whole number, "
                                f"not {getattr(self, name)}")
        smallest, why = MIN_BATCH_SIZE.get(self.experiment, (1, ""))
        if self.batch_size < smallest:
            raise UserError(f"--batch-size must be {smallest} or more for {self.experiment} "
                            f"({why}), not {self.batch_size}; the default is 256")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be a whole number from 0 to {MAX_SEED}, not {self.seed}")
        for name in ("learning_rate", "weight_decay", "warmup_epochs", "margin", "temperature",
                     "beta", "kl_warmup_epochs", "class_weight", "time_budget"):
            value = getattr(self, name)
            if value is not None and math.isinf(value):
                raise UserError(f"--{dashed(name)} must be a finite number, not {value}")
        for name in ("train_limit", "test_limit", "validation"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{dashed(name)} must be a positive whole number, not {value}")
        for name in ("learning_rate", "temperature", "margin"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{dashed(name)} must be greater than 0, "
                                f"not {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs", "beta", "kl_warmup_epochs", "width",
                     "bottleneck_blocks", "class_weight"):
            if not getattr(self, name) >= 0:
                raise UserError(f"--{dashed(name)} must be 0 or more, not {getattr(self, name)}")
        if self.crop != 0 and self.crop < 8:
            raise UserError(f"--crop must be 0 (whole images) or 8 or more, not {self.crop}")
        if not 0 < self.crop_until <= 1:
            raise UserError(f"--crop-until must be a part of the schedule in (0, 1], "
                            f"not {self.crop_until}")
        if self.crop_until < 1 and not self.crop:
            raise UserError("--crop-until needs --crop: the size of the early epochs' views")
        for name in ("bottleneck_blocks", "class_weight"):
            if getattr(self, name) and self.model != "unet":
                raise UserError(f"--{dashed(name)} is for --model unet, not {self.model}")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be 0 (off) or a decay in (0, 1) such as 0.999, "
                            f"not {self.ema}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UserError(f"--time-budget must be a positive number of minutes, "
                            f"not {self.time_budget}")
        check_device(self.device)
        check_folder(self.out, "--out")
        if not self.dataset:
            raise UserError("--dataset must not be empty")
        if self.exclude is not None and not Path(self.exclude).is_file():
            raise UserError(f"--exclude {self.exclude} does not exist; give a text file of "
                            "image names")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise UserError(f"--init-from {self.init_from} does not exist; give the "
                            "separator_model.pth of a finished run")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        name = self.experiment
        if self.experiment == "separator":
            return Path(self.out) / "separation" / self.model
        return Path(self.out) / name


def check_device(device: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")


def check_folder(path: str | Path, option: str) -> None:
    """A folder to write into: absent (it will be made) or a folder, never a file."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{option} {path} is a file; give a folder to write into")


def dashed(name: str) -> str:
    return name.replace("_", "-")


def fields_for(experiment: str) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Config) if experiment in f.metadata["used_by"]
            and f.name != "experiment"]


def from_toml(path: str | Path) -> dict[str, Any]:
    """Read option values from a TOML file (keys are option names, with - or _)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from None
    known = {f.name for f in dataclasses.fields(Config)}
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(f"config file {path}: unknown option {key!r}")
        values[name] = coerce(name, value)
    return values


def coerce(name: str, value: Any) -> Any:
    """Convert a command-line string or TOML value to the option's type, or raise UserError."""
    kind = str(next(f.type for f in dataclasses.fields(Config) if f.name == name))
    if value is None or (isinstance(value, str) and value.lower() == "none" and "None" in kind):
        if "None" in kind:
            return None
        raise UserError(f"--{dashed(name)} needs a value")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"--{dashed(name)} must be true or false, not {value!r}")
    try:
        if kind.startswith("int"):
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        wanted = "a whole number" if kind.startswith("int") else (
            "a number" if kind.startswith("float") else "text")
        raise UserError(f"--{dashed(name)} must be {wanted}, not {value!r}") from None


def from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a Config saved in a checkpoint (unknown keys from newer versions are ignored)."""
    known = {f.name for f in dataclasses.fields(Config)}
    values = {k: v for k, v in values.items() if k in known}
    values.setdefault("test_seed", values.get("seed", 0))  # runs from before --test-seed
    return Config(**values)
