"""Everything a run needs to continue exactly where it stopped: the model, the optimiser,
the moving average of the weights, where in which epoch, the random number generators and
the history. `state_dict()` is the training checkpoint; `resume()` reads one back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from latentlab.checkpoint import FORMAT, FORMAT_VERSION, read_checkpoint
from latentlab.config import Config
from latentlab.errors import UserError
from latentlab.files import save_atomic
from latentlab.models import ImageModel

# Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"device", "resume", "out", "data_dir", "time_budget", "tsne_points",
                     "precision", "compile", "tensorboard"}


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_early: bool = False  # by --time-budget


def empty_partial() -> dict[str, Any]:
    """Logged sums of the steps already done in an interrupted epoch (over all processes)."""
    return {"sums": {}, "seen": 0, "seconds": 0.0}


@dataclass
class TrainState:
    """A run's progress: what changes as it trains, and all that resume must restore."""

    model: ImageModel
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None  # the moving average of the weights (--ema), or None
    order_generator: torch.Generator  # draws each epoch's order of the training images
    epoch_generator_state: Tensor  # order_generator's state when this epoch began
    epoch: int = 0  # epochs done
    step: int = 0  # steps done in this epoch
    budget_steps: int | None = None  # --time-budget as a step count, once the pace settles
    budget_from: tuple[int, float] = (0, 0.0)  # (steps, progress) when it became one
    result: TrainResult = field(default_factory=TrainResult)
    partial: dict[str, Any] = field(default_factory=empty_partial)

    @classmethod
    def create(cls, model: ImageModel, config: Config) -> TrainState:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        # BatchNorm's running statistics are averaged too, so they match the averaged weights
        ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema),
                             use_buffers=True) if config.ema else None)
        order_generator = torch.Generator().manual_seed(config.seed + 1)
        return cls(model, optimizer, ema, order_generator, order_generator.get_state())

    def state_dict(self, config: Config, device: torch.device) -> dict[str, Any]:
        """The training checkpoint: this state, the global RNGs and the run's config."""
        model = self.model
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "training",
            "experiment": config.experiment, "config": config.to_dict(),
            "model_class": type(model).__name__, "hparams": model.hparams(),
            "model": model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch, "step": self.step, "budget_steps": self.budget_steps,
            "budget_from": list(self.budget_from),
            "epoch_generator_state": self.epoch_generator_state,
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "history": self.result.history, "train_seconds": self.result.train_seconds,
            "partial_epoch": self.partial,
        }

    def save(self, path: Path, config: Config, device: torch.device) -> None:
        save_atomic(self.state_dict(config, device), path)

    def resume(self, path: Path, config: Config, device: torch.device, main: bool) -> None:
        """Continue from the checkpoint at path, checked to be of this model and settings.
        Only the main process takes the partial epoch's logged sums (they are totals over
        all processes)."""
        saved = read_checkpoint(path, "training checkpoint")
        check_compatible(saved, self.model, config, path)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.ema is not None and saved.get("ema") is not None:
            self.ema.load_state_dict(saved["ema"])
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.budget_steps = saved.get("budget_steps")
        steps, at = saved.get("budget_from", (0, 0.0))
        self.budget_from = (int(steps), float(at))
        self.epoch_generator_state = saved["epoch_generator_state"]
        self.result.history = saved["history"]
        self.result.train_seconds = saved["train_seconds"]
        if main:
            self.partial = saved.get("partial_epoch", self.partial)
        torch.set_rng_state(saved["torch_rng_state"])
        if device.type == "cuda" and saved.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng_state"])


def check_compatible(state: dict[str, Any], model: ImageModel, config: Config,
                     path: Path) -> None:
    if state.get("kind") != "training":
        raise UserError(f"{path} is not a training checkpoint; cannot resume from it")
    if (state.get("model_class") != type(model).__name__ or state.get("hparams") != model.hparams()
            or state.get("experiment") != config.experiment):
        raise UserError(
            f"{path} is a checkpoint of another model ({state.get('experiment')} "
            f"{state.get('model_class')} {state.get('hparams')}), not of this "
            f"{config.experiment} {type(model).__name__} {model.hparams()}; "
            "choose another --out folder or run without --resume to start over")
    saved = state.get("config", {})
    changed = sorted(k for k, v in config.to_dict().items()
                     if k not in RESUMABLE_CHANGES and k in saved and saved[k] != v)
    if changed:
        details = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(config, k)!r}"
                            for k in changed)
        raise UserError(f"cannot resume {path} with different settings ({details}); "
                        "use the original settings or run without --resume")
