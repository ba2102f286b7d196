"""The schedule: linear warm-up then cosine decay of the learning rate, batches of an epoch,
and a time budget that ends the schedule early."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from torch import Tensor

from latentlab.checkpoint import read_checkpoint
from latentlab.config import Config


def learning_rate(config: Config, progress: float) -> float:
    """Linear warm-up then cosine decay to zero; progress runs from 0 to 1 over the run."""
    warmup = min(config.warmup_epochs / config.epochs, 0.5)
    if progress < warmup:
        return config.learning_rate * (progress + 1e-3) / warmup
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup)
                                                                     / (1 - warmup))))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def batches(images: Tensor, labels: Tensor, order: Tensor, batch_size: int,
            start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (step, images, labels) over order in fixed-size batches from step `start`.

    The last partial batch is dropped when there is more than one batch, so batch
    statistics and contrastive batches always see a full batch."""
    steps = steps_per_epoch(len(order), batch_size)
    for step in range(start, steps):
        index = order[step * batch_size: (step + 1) * batch_size]
        yield step, images[index], labels[index]


def budget_seconds(config: Config) -> float | None:
    """--time-budget in seconds, or None without one."""
    return config.time_budget * 60 if config.time_budget else None


def progress(epoch: int, step: int, n_steps: int, epochs: int, elapsed: float = 0.0,
             budget: float | None = None, budget_steps: int | None = None,
             budget_from: tuple[int, float] = (0, 0.0)) -> float:
    """How far the schedule is, 0 to 1: by steps, or by the time budget when it runs out
    sooner (the schedule then finishes within it). Once the budget has been turned into a
    step count (budget_steps, when the pace has settled), steps alone decide, so a resumed
    run follows the schedule an uninterrupted one did: from budget_from, the (steps,
    progress) of that moment, on in a straight line to 1 at budget_steps."""
    done = epoch * n_steps + step
    by_steps = done / (epochs * n_steps)
    if budget_steps:
        start, at = budget_from
        return max(by_steps, at + (1 - at) * (done - start) / max(budget_steps - start, 1))
    return max(by_steps, elapsed / budget) if budget else by_steps


def steps_in_budget(budget: float, elapsed: float, done: int, pace: float) -> int:
    """The step count at which a time budget (seconds) runs out: `done` steps taken in
    `elapsed` seconds, the rest at `pace` steps a second."""
    return max(done, done + round((budget - elapsed) * pace))


class KLWarmup:
    """The weight of a KL term: it ramps linearly from 0 to beta over the first
    warmup_epochs of training (Bowman et al. 2016), then stays at beta. It counts training
    steps from `done`, the steps a resumed run has already taken, so a resumed run carries
    on where the interrupted one stopped."""

    def __init__(self, beta: float, warmup_epochs: float, per_epoch: int, done: int = 0) -> None:
        self.beta, self.warmup_steps, self.done = beta, warmup_epochs * per_epoch, done

    def weight(self) -> float:
        if self.warmup_steps <= 0 or self.done >= self.warmup_steps:
            return self.beta
        return self.beta * self.done / self.warmup_steps

    def step(self) -> float:
        """The weight of this training step; counts it."""
        weight = self.weight()
        self.done += 1
        return weight


def kl_warmup(config: Config, n_train: int, checkpoint: Path, resume: bool) -> KLWarmup:
    """The run's KL schedule; on --resume, from the steps its checkpoint has taken."""
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    done = 0
    if resume and checkpoint.is_file():
        state = read_checkpoint(checkpoint, "training checkpoint")
        done = int(state.get("epoch", 0)) * per_epoch + int(state.get("step", 0))
    return KLWarmup(config.beta, config.kl_warmup_epochs, per_epoch, done)
