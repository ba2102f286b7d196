"""One training loop for every model: AdamW with warm-up and cosine decay, a progress bar,
atomic checkpoints, exact resume (also from the middle of an epoch after SIGINT/SIGTERM)."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from latentlab import distributed
from latentlab.checkpoint import FORMAT, FORMAT_VERSION, read_checkpoint, save_atomic
from latentlab.config import Config
from latentlab.devices import pick_device as pick_device  # re-exported for callers
from latentlab.errors import UserError
from latentlab.models import ImageModel

# Seconds between resume checkpoints written at the end of an epoch. Epochs of minutes (CPU)
# each get one; epochs of seconds (GPU) share one, since writing the model and optimiser
# every few seconds costs a noticeable part of the run. An interrupt saves at once anyway.
CHECKPOINT_SECONDS = 60.0

# train_step(model, images, labels) -> {"loss": differentiable scalar, other logged scalars}
TrainStep = Callable[[Any, Tensor, Tensor], dict[str, Tensor]]
# eval_step(model, images, labels) -> {"loss": scalar, ...}, averaged over the validation set
EvalStep = Callable[[Any, Tensor, Tensor], dict[str, Tensor]]


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted; progress saved in {checkpoint}. "
                         "Run the same command with --resume to continue")
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_early: bool = False  # by --time-budget


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.raised = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def learning_rate(config: Config, progress: float) -> float:
    """Linear warm-up then cosine decay to zero; progress runs from 0 to 1 over the run."""
    warmup = min(config.warmup_epochs / config.epochs, 0.5)
    if progress < warmup:
        return config.learning_rate * (progress + 1e-3) / warmup
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup)
                                                                     / (1 - warmup))))


def batches(images: Tensor, labels: Tensor, order: Tensor, batch_size: int, start: int = 0):
    """Yield (step, images, labels) over order in fixed-size batches from step `start`.

    The last partial batch is dropped when there is more than one batch, so batch
    statistics and contrastive batches always see a full batch."""
    steps = max(1, len(order) // batch_size)
    for step in range(start, steps):
        index = order[step * batch_size: (step + 1) * batch_size]
        yield step, images[index], labels[index]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


@torch.no_grad()
def evaluate(model: ImageModel, eval_step: EvalStep, images: Tensor, labels: Tensor,
             batch_size: int = 500) -> dict[str, float]:
    """Average eval_step's scalars over a whole split, weighting by batch size."""
    model.eval()
    totals: dict[str, Any] = {}  # sums stay on the device: one wait for the GPU, at the end
    for start in range(0, len(images), batch_size):
        x = model.prepare(images[start: start + batch_size], model.input_size(), checked=False)
        y = labels[start: start + batch_size].to(x.device)
        for key, value in eval_step(model, x, y).items():
            totals[key] = totals.get(key, 0.0) + torch.as_tensor(value).detach().double() * len(x)
    return {key: float(value) / max(1, len(images)) for key, value in totals.items()}


def fit(model: ImageModel, config: Config, train_images: Tensor, train_labels: Tensor,
        val_images: Tensor, val_labels: Tensor, train_step: TrainStep, eval_step: EvalStep,
        checkpoint_path: Path, resume: bool = False,
        on_epoch_start: Callable[[int], None] | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train model in place; write a checkpoint after each epoch (at most one a minute) and on
    an interrupt; return the history.

    on_epoch_start(epoch) runs before each epoch's batches (e.g. to draw fresh mixture pairs);
    on_epoch_end(epoch, record) after its validation and checkpoint (e.g. to keep the best
    weights): each epoch is scored on the validation split (val_* in the history), never on
    the test split. train_images/labels may be tensors or views that index like them.
    Under torchrun every process trains; process 0 alone writes, reports and calls
    on_epoch_end, and the others exit when training ends."""
    device = distributed.setup(config.device)
    distributed.check_batch_size(config.batch_size)
    main = distributed.is_main()
    model.to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":  # keep the whole dataset on the GPU: no host copies per batch
        train_images, train_labels = train_images.to(device), train_labels.to(device)
        val_images, val_labels = val_images.to(device), val_labels.to(device)
        torch.backends.cudnn.benchmark = True  # batches have one shape: time the conv kernels once
    runner = distributed.wrap(model, train_step, device)
    if config.compile == "on":
        runner = torch.compile(runner)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"
                                          and torch.cuda.is_bf16_supported())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    # BatchNorm's running statistics are averaged too, so they match the averaged weights
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
           if config.ema else None)
    order_generator = torch.Generator().manual_seed(config.seed + 1)
    n_steps = steps_per_epoch(len(train_labels), config.batch_size)
    result = TrainResult()
    epoch, start_step = 0, 0
    epoch_generator_state = order_generator.get_state()
    # Logged sums of the steps already done in an interrupted epoch (over all processes).
    partial: dict[str, Any] = {"sums": {}, "seen": 0, "seconds": 0.0}
    if resume and checkpoint_path.is_file():
        state = read_checkpoint(checkpoint_path, "training checkpoint")
        check_compatible(state, model, config, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        epoch, start_step = state["epoch"], state["step"]
        epoch_generator_state = state["epoch_generator_state"]
        result.history, result.train_seconds = state["history"], state["train_seconds"]
        if main:
            partial = state.get("partial_epoch", partial)
        torch.set_rng_state(state["torch_rng_state"])
        if device.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"])
        if main:
            print(f"resuming from {checkpoint_path}: epoch {epoch + 1}, step {start_step}")

    def save(epoch: int, step: int, generator_state: Tensor, partial: dict[str, Any]) -> None:
        if not main:
            return
        save_atomic({
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "training",
            "experiment": config.experiment, "config": config.to_dict(),
            "model_class": type(model).__name__, "hparams": model.hparams(),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch, "step": step, "epoch_generator_state": generator_state,
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "history": result.history, "train_seconds": result.train_seconds,
            "partial_epoch": partial,
        }, checkpoint_path)

    budget = config.time_budget * 60 if config.time_budget else None
    last_saved = time.perf_counter()
    with StopFlag() as stop:
        while epoch < config.epochs:
            order_generator.set_state(epoch_generator_state)
            order = torch.randperm(len(train_labels), generator=order_generator)
            order = order.to(train_images.device)
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            model.train()
            # logged sums stay on the device until the epoch ends: reading a GPU value every
            # step would stall the GPU while the next step is launched
            sums: dict[str, Any] = dict(partial["sums"])
            seen: int = partial["seen"]
            started = time.perf_counter() - partial["seconds"]
            result.train_seconds -= partial["seconds"]  # counted again below, with the rest
            bar = tqdm(total=n_steps, initial=start_step, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="step", leave=False, disable=None if main else True,
                       dynamic_ncols=True)
            for step, x, y in batches(train_images, train_labels, order, config.batch_size,
                                      start_step):
                progress = (epoch * n_steps + step) / (config.epochs * n_steps)
                if budget:  # finish the schedule when the time budget runs out
                    elapsed = result.train_seconds + time.perf_counter() - started
                    # every process must follow the same schedule
                    [progress] = distributed.max_over_processes([max(progress, elapsed / budget)],
                                                                device)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, progress)
                # dataset batches are valid: checking their values would stall a GPU per step
                x = model.prepare(distributed.shard(x), model.input_size(), checked=False)
                y = distributed.shard(y).to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logs = runner(x, y)
                optimizer.zero_grad(set_to_none=True)
                logs["loss"].backward()
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().float() * len(x)
                seen += len(x)
                if device.type == "cpu" or step % 50 == 0:
                    rate = seen * distributed.world_size() / max(time.perf_counter() - started,
                                                                 1e-9)
                    bar.set_postfix(loss=f"{float(logs['loss'].detach()):.4f}",
                                    img_s=f"{rate:.0f}")
                bar.update()
                if distributed.max_over_processes([float(stop.raised)], device)[0]:
                    seconds = time.perf_counter() - started
                    result.train_seconds += seconds
                    save(epoch, step + 1, epoch_generator_state,
                         totals_over_processes(sums, seen, seconds, device))
                    bar.close()
                    raise Interrupted(checkpoint_path)
                if budget and progress >= 1.0:
                    result.stopped_early = True
                    break
            bar.close()
            seconds = time.perf_counter() - started
            result.train_seconds += seconds
            totals = totals_over_processes(sums, seen, seconds, device)
            partial = {"sums": {}, "seen": 0, "seconds": 0.0}
            record = {"epoch": epoch + 1, "seconds": seconds,
                      "images_per_second": totals["seen"] / max(seconds, 1e-9)}
            record.update({f"train_{k}": v / max(totals["seen"], 1)
                           for k, v in totals["sums"].items()})
            scores = evaluate(model, eval_step, val_images, val_labels)
            if ema is not None:  # the last weights too: the gain of averaging, run by run
                record.update({f"val_raw_{k}": v for k, v in scores.items()})
                scores = evaluate(cast(ImageModel, ema.module), eval_step, val_images,
                                  val_labels)
            record.update({f"val_{k}": v for k, v in scores.items()})
            result.history.append(record)
            if main:
                raw = f" (last weights {record['val_raw_loss']:.4f})" if ema is not None else ""
                print(f"epoch {epoch + 1}/{config.epochs}  "
                      f"train loss {record.get('train_loss', float('nan')):.4f}  "
                      f"validation loss {record['val_loss']:.4f}{raw}  {seconds:.1f}s  "
                      f"{record['images_per_second']:.0f} img/s", flush=True)
            epoch, start_step = epoch + 1, 0
            epoch_generator_state = order_generator.get_state()
            if (epoch >= config.epochs or result.stopped_early
                    or time.perf_counter() - last_saved >= CHECKPOINT_SECONDS):
                save(epoch, 0, epoch_generator_state, partial)
                last_saved = time.perf_counter()
            if on_epoch_end is not None and main:
                with averaged_weights(model, ema):  # what is kept is what was evaluated
                    on_epoch_end(epoch, record)
            if result.stopped_early:
                if main:
                    print(f"time budget of {config.time_budget} min reached after {epoch} epochs")
                break
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    if distributed.launched_by_torchrun():
        distributed.finish()
        if not main:  # evaluation and every file are the first process's work
            raise SystemExit(0)
    return result


@contextmanager
def averaged_weights(model: ImageModel, ema: AveragedModel | None) -> Iterator[None]:
    """Inside the block the model holds the averaged weights (if any), afterwards its own."""
    if ema is None:
        yield
        return
    own = {key: value.clone() for key, value in model.state_dict().items()}
    model.load_state_dict(ema.module.state_dict())
    try:
        yield
    finally:
        model.load_state_dict(own)


def totals_over_processes(sums: dict[str, Any], seen: int, seconds: float,
                          device: torch.device) -> dict[str, Any]:
    """Logged sums (numbers or 0-d tensors) and image count added up over all processes
    (every one logs the same keys)."""
    keys = sorted(sums)
    *values, seen_everywhere = distributed.sum_over_processes(
        [float(sums[k]) for k in keys] + [float(seen)], device)
    return {"sums": dict(zip(keys, values)), "seen": int(seen_everywhere), "seconds": seconds}


# Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"device", "resume", "out", "data_dir", "time_budget", "tsne_points",
                     "precision", "compile", "tensorboard"}


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
