"""Multi-process training under torchrun: process group, ranks, and reductions.

Run any `latentlab train` command as `torchrun --nproc_per_node=N -m latentlab train ...`.
--batch-size stays the global batch: each of the N processes takes every N-th image of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from latentlab.devices import pick_device
from latentlab.errors import UserError


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; torchrun's RANK before the process group is joined."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Only the first process writes files and shows progress."""
    return rank() == 0


class WorkerFinished(Exception):
    """Raised in every process but the first once the distributed training is over: what
    follows (evaluation, files, reports) is the first process's work. The CLI ends such a
    process with exit code 0."""


# Set once the distributed part of a run is over: what follows runs in the first process alone.
_finished = False


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _finished


def setup(device_name: str) -> torch.device:
    """Join the process group when started by torchrun (gloo on CPU, NCCL on CUDA)."""
    device = pick_device(device_name)
    if not launched_by_torchrun():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """Leave the process group after the main training: evaluation, and any helper model
    an experiment trains for comparison, then run in the first process alone."""
    global _finished
    cleanup()
    _finished = True


def shard(batch: Tensor) -> Tensor:
    """This process's part of a global batch: every world_size-th item from its rank."""
    return batch[rank()::world_size()] if world_size() > 1 else batch


def check_batch_size(batch_size: int) -> None:
    if batch_size % world_size():
        raise UserError(f"--batch-size {batch_size} must be divisible by the number of "
                        f"processes ({world_size()}) so every process gets an equal share")


def sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def max_over_processes(values: list[float], device: torch.device) -> list[float]:
    """Keeps decisions that depend on the clock or on signals the same in every process."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def gather_with_gradient(tensor: Tensor) -> Tensor:
    """Concatenate (B, ...) from every process into (world_size * B, ...), gradients flowing
    back to each process's own part: contrastive losses then see the global batch."""
    if world_size() == 1:
        return tensor
    import warnings

    import torch.distributed.nn.functional as distributed_functional

    with warnings.catch_warnings():  # its suggested successor is a private API
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(distributed_functional.all_gather(tensor), dim=0)


class StepModule(nn.Module):
    """Wraps a model and its train_step so DistributedDataParallel can synchronise the
    gradients of any step function (one that calls model.encode, model.embed, ...)."""

    def __init__(self, model: nn.Module, train_step: Callable[..., dict[str, Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.train_step = train_step

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return self.train_step(self.model, images, labels)


def wrap(model: nn.Module, train_step: Callable[..., dict[str, Tensor]],
         device: torch.device) -> Any:
    step = StepModule(model, train_step)
    if world_size() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
