"""The schedule: linear warm-up then cosine decay of the learning rate, batches of an epoch,
and a time budget that ends the schedule early."""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch import Tensor

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
             budget: float | None = None) -> float:
    """How far the schedule is, 0 to 1: by steps, or by time when a budget runs out sooner
    (the schedule then finishes within the budget)."""
    by_steps = (epoch * n_steps + step) / (epochs * n_steps)
    return max(by_steps, elapsed / budget) if budget else by_steps
