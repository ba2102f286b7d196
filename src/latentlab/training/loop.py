"""One training loop for every model: AdamW with warm-up and cosine decay, a progress bar,
atomic checkpoints, exact resume (also from the middle of an epoch after SIGINT/SIGTERM).

fit(model, job, steps, hooks) reads top to bottom: set up (`start`), then per epoch
`train_epoch` (the steps) and `end_epoch` (totals, validation, the history record), a
checkpoint when one is due, and the caller's hooks."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from latentlab import distributed
from latentlab.config import Config
from latentlab.devices import use_bf16
from latentlab.errors import UserError
from latentlab.models import ImageModel
from latentlab.training.schedule import (
    batches,
    budget_seconds,
    learning_rate,
    progress,
    steps_in_budget,
    steps_per_epoch,
)
from latentlab.training.state import TrainResult, TrainState, empty_partial

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


@dataclass
class Job:
    """What fit trains on and where it keeps its progress. The images and labels may be
    tensors or views that index like them (a separator's mixtures and pair indices)."""

    config: Config
    train: tuple[Tensor, Tensor]  # images, labels
    val: tuple[Tensor, Tensor]  # scored every epoch; never the test split
    checkpoint: Path
    resume: bool = False


@dataclass
class Steps:
    """train(model, images, labels) -> {"loss", ...}; eval, the same, averaged over the
    validation split. on_progress(progress), when given, is told the schedule's progress
    (0 to 1) before each training step: a step whose cost changes with it (progressive
    resizing) says from which progress on its cost stays put, `settles_at`: a time budget
    becomes a step count only after the first whole epoch from there."""

    train: TrainStep
    eval: EvalStep
    on_progress: Callable[[float], None] | None = None
    settles_at: float = 0.0


@dataclass
class Hooks:
    """epoch_start(epoch) runs before each epoch's batches (e.g. to draw fresh mixture
    pairs); epoch_end(epoch, record) after its validation (e.g. to keep the best weights),
    in the first process only. When epoch_end answers True (it wrote a file), the checkpoint
    is written at once: the two are written together, not up to a minute apart."""

    epoch_start: Callable[[int], None] | None = None
    epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None


@dataclass
class Loop:
    """What one call of fit works with: its settings, data, step and state."""

    config: Config
    device: torch.device
    main: bool  # the process that writes, reports and runs on_epoch_end
    state: TrainState
    runner: Any  # the train step, wrapped for DistributedDataParallel (and torch.compile)
    bf16: bool  # train under bfloat16 autocast
    train_images: Tensor
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor
    checkpoint_path: Path
    n_steps: int  # per epoch
    budget: float | None  # --time-budget in seconds
    steps: Steps

    def save(self) -> None:
        if self.main:
            self.state.save(self.checkpoint_path, self.config, self.device)


class EpochLog:
    """An epoch's logged sums and image count. They stay on the device until the epoch ends:
    reading a GPU value every step would stall the GPU while the next step is launched."""

    def __init__(self, partial: dict[str, Any]) -> None:
        self.sums: dict[str, Any] = dict(partial["sums"])
        self.seen: int = partial["seen"]
        self.started = time.perf_counter() - partial["seconds"]

    def add(self, logs: dict[str, Tensor], n: int) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float() * n
        self.seen += n

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def start(model: ImageModel, job: Job, steps: Steps) -> Loop:
    """Join the process group, put model and (on a GPU) data on the device, build the state."""
    config, train, val = job.config, job.train, job.val
    device = distributed.setup(config.device)
    distributed.check_batch_size(config.batch_size)
    model.to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":  # keep the whole dataset on the GPU: no host copies per batch
        train = (train[0].to(device), train[1].to(device))
        val = (val[0].to(device), val[1].to(device))
        torch.backends.cudnn.benchmark = True  # batches have one shape: time the conv kernels once
    runner = distributed.wrap(model, steps.train, device)
    if config.compile == "on":
        runner = torch.compile(runner)
    return Loop(config, device, distributed.is_main(), TrainState.create(model, config), runner,
                use_bf16(config.precision, device), *train, *val, job.checkpoint,
                steps_per_epoch(len(train[1]), config.batch_size), budget_seconds(config), steps)


def fit(model: ImageModel, job: Job, steps: Steps, hooks: Hooks | None = None) -> TrainResult:
    """Train model in place; write a checkpoint after each epoch (at most one a minute) and on
    an interrupt; return the history. Each epoch is scored on the validation split (val_* in
    the history), never on the test split.
    Under torchrun every process trains and returns; process 0 alone writes, reports and
    calls hooks.epoch_end, and what follows training is its work alone (is_main())."""
    hooks = hooks or Hooks()
    config = job.config
    run = start(model, job, steps)
    state, result = run.state, run.state.result
    if job.resume and job.checkpoint.is_file():
        state.resume(job.checkpoint, config, run.device, run.main)
        if run.main:
            print(f"resuming from {job.checkpoint}: epoch {state.epoch + 1}, step {state.step}")
    last_saved = time.perf_counter()
    with StopFlag() as stop:
        while state.epoch < config.epochs:
            order = epoch_order(run)
            if hooks.epoch_start is not None:
                hooks.epoch_start(state.epoch)
            log, seconds = train_epoch(run, order, stop)
            record = end_epoch(run, log, seconds, steps.eval)
            check_finite(record, config)
            wrote = False  # a hook that wrote a file (best weights) has the checkpoint follow
            if hooks.epoch_end is not None and run.main:
                with averaged_weights(model, state.ema):  # what is kept is what was evaluated
                    wrote = bool(hooks.epoch_end(state.epoch, record))
            if (state.epoch >= config.epochs or result.stopped_early or wrote
                    or time.perf_counter() - last_saved >= CHECKPOINT_SECONDS):
                run.save()
                last_saved = time.perf_counter()
            if result.stopped_early:
                if run.main:
                    print(f"time budget of {config.time_budget} min reached after "
                          f"{state.epoch} epochs")
                break
    if state.ema is not None:
        model.load_state_dict(state.ema.module.state_dict())
    model.eval()
    if distributed.launched_by_torchrun():
        distributed.finish()  # what follows runs in the first process alone
    return result


def check_finite(record: dict[str, float], config: Config) -> None:
    """Stop with one message when the epoch's training or validation loss is not finite."""
    diverged = [f"{what} loss is {record[key]}" for key, what in (
        ("train_loss", "training"), ("val_loss", "validation"))
        if not math.isfinite(record.get(key, 0.0))]
    if diverged:
        raise UserError(f"training diverged in epoch {record['epoch']}: the "
                        f"{' and the '.join(diverged)}; lower --learning-rate (now "
                        f"{config.learning_rate:g})")


def epoch_order(run: Loop) -> Tensor:
    """This epoch's order of the training images, drawn again the same way on resume."""
    generator = run.state.order_generator
    generator.set_state(run.state.epoch_generator_state)
    order = torch.randperm(len(run.train_labels), generator=generator)
    return order.to(run.train_images.device)


def train_epoch(run: Loop, order: Tensor, stop: StopFlag) -> tuple[EpochLog, float]:
    """The epoch's steps from state.step on; returns their log and the epoch's seconds.
    On SIGINT/SIGTERM saves a checkpoint and raises Interrupted."""
    state, config = run.state, run.config
    state.model.train()
    log = EpochLog(state.partial)
    state.result.train_seconds -= state.partial["seconds"]  # counted again below, with the rest
    bar = tqdm(total=run.n_steps, initial=state.step, desc=f"epoch {state.epoch + 1}/"
               f"{config.epochs}", unit="step", leave=False, disable=None if run.main else True,
               dynamic_ncols=True)
    for step, x, y in batches(run.train_images, run.train_labels, order, config.batch_size,
                              state.step):
        done = progress(state.epoch, step, run.n_steps, config.epochs,
                        state.result.train_seconds + log.seconds(), run.budget,
                        state.budget_steps, state.budget_from)
        if run.budget and not state.budget_steps:  # every process must follow one schedule
            [done] = distributed.max_over_processes([done], run.device)
        if run.steps.on_progress is not None:
            run.steps.on_progress(done)
        logs, n = train_step(run, x, y, learning_rate(config, done))
        log.add(logs, n)
        if run.device.type == "cpu" or step % 50 == 0:
            rate = log.seen * distributed.world_size() / max(log.seconds(), 1e-9)
            bar.set_postfix(loss=f"{float(logs['loss'].detach()):.4f}", img_s=f"{rate:.0f}")
        bar.update()
        if distributed.max_over_processes([float(stop.raised)], run.device)[0]:
            bar.close()
            interrupt(run, step + 1, log)
        if run.budget and done >= 1.0:  # finish the schedule when the time budget runs out
            state.result.stopped_early = True
            break
    bar.close()
    seconds = log.seconds()
    state.result.train_seconds += seconds
    return log, seconds


def train_step(run: Loop, x: Tensor, y: Tensor, lr: float) -> tuple[dict[str, Tensor], int]:
    """One optimiser step on this process's share of a batch; returns the logs and the
    number of images they cover."""
    state = run.state
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    # dataset batches are valid: checking their values would stall a GPU per step
    x = state.model.prepare(distributed.shard(x), state.model.input_size(), checked=False)
    y = distributed.shard(y).to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.bf16):
        logs = run.runner(x, y)
    state.optimizer.zero_grad(set_to_none=True)
    logs["loss"].backward()
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    return logs, len(x)


def interrupt(run: Loop, steps_done: int, log: EpochLog) -> None:
    """Save where the epoch stopped, with its logged sums so far, and raise Interrupted."""
    seconds = log.seconds()
    run.state.result.train_seconds += seconds
    run.state.step = steps_done
    run.state.partial = totals_over_processes(log.sums, log.seen, seconds, run.device)
    run.save()
    raise Interrupted(run.checkpoint_path)


def end_epoch(run: Loop, log: EpochLog, seconds: float, eval_step: EvalStep) -> dict[str, float]:
    """Total the epoch over all processes, score it on the validation split, add the record
    to the history and report it; move the state to the next epoch."""
    state = run.state
    totals = totals_over_processes(log.sums, log.seen, seconds, run.device)
    record = {"epoch": state.epoch + 1, "seconds": seconds,
              "images_per_second": totals["seen"] / max(seconds, 1e-9)}
    record.update({f"train_{k}": v / max(totals["seen"], 1) for k, v in totals["sums"].items()})
    # validation runs at the training precision (and speed), as the forward pass does
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.bf16):
        scores = validate(state.model, eval_step, run.val_images, run.val_labels)
        if state.ema is not None:  # the last weights too: the gain of averaging, run by run
            record.update({f"val_raw_{k}": v for k, v in scores.items()})
            scores = validate(cast(ImageModel, state.ema.module), eval_step, run.val_images,
                              run.val_labels)
    record.update({f"val_{k}": v for k, v in scores.items()})
    state.result.history.append(record)
    if run.main:
        raw = f" (last weights {record['val_raw_loss']:.4f})" if state.ema is not None else ""
        print(f"epoch {state.epoch + 1}/{run.config.epochs}  "
              f"train loss {record.get('train_loss', float('nan')):.4f}  "
              f"validation loss {record['val_loss']:.4f}{raw}  {seconds:.1f}s  "
              f"{record['images_per_second']:.0f} img/s", flush=True)
    state.epoch, state.step, state.partial = state.epoch + 1, 0, empty_partial()
    if run.budget and state.budget_steps is None and not state.result.stopped_early:
        # the progress this epoch began at: a whole epoch at the settled pace is needed
        began = progress(state.epoch - 1, 0, run.n_steps, run.config.epochs,
                         state.result.train_seconds - seconds, run.budget)
        [began] = distributed.max_over_processes([began], run.device)
        if began >= run.steps.settles_at:
            budget_to_steps(run, seconds)
    state.epoch_generator_state = state.order_generator.get_state()
    return record


def budget_to_steps(run: Loop, seconds: float) -> None:
    """From here on the time budget is a step count, at the pace of the epoch just done
    (`seconds`): a resumed run follows the same schedule exactly, however busy the machine."""
    state = run.state
    done = state.epoch * run.n_steps
    at = progress(state.epoch, 0, run.n_steps, run.config.epochs, state.result.train_seconds,
                  run.budget)
    steps = steps_in_budget(cast(float, run.budget), state.result.train_seconds, done,
                            run.n_steps / max(seconds, 1e-9))
    [most, at] = distributed.max_over_processes([float(steps), at], run.device)
    state.budget_steps, state.budget_from = int(most), (done, at)


@torch.no_grad()
def validate(model: ImageModel, eval_step: EvalStep, images: Tensor, labels: Tensor,
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
