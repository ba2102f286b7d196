"""Training throughput of every model in fp32 and bf16, measured in one run, with the share of
each step spent in augmentation, forward (with the loss), backward and the optimiser, and
how much of the machine's own peak it uses.

    python benchmarks/throughput.py [--steps 8] [--batch-size 256] [--device auto]

Each model trains on random CIFAR-10-shaped images (speed does not depend on the pixels)
with the training step of its experiment, as the training loop runs it: channels-last,
bf16 autocast or not, AdamW.

Utilisation = achieved FLOP/s / peak FLOP/s, both measured in this run:
- peak: at each precision the fastest of three kernels, each the best of a few runs, timed
  on the same threads the models train on: a 2048x2048 matrix product (2 n^3 FLOPs), and
  3x3 (128 channels) and 1x1 (256 channels) convolutions of 32 images of 32x32,
  channels-last (on AMD EPYC oneDNN's convolutions beat the fp32 matrix product);
- achieved: the FLOPs of one training step (forward and backward, augmentation and loss
  included) counted by torch.utils.flop_counter.FlopCounterMode, which counts 2 FLOPs per
  multiply-add of every matmul and convolution (elementwise work is not counted, so this
  is a floor), times the steps per second measured.
Prints a table and writes benchmarks/results/throughput/fp32-vs-bf16.json."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from latentlab.config import Config
from latentlab.data.mixtures import MixturePairs
from latentlab.devices import bf16_native, cpu_name, has_amx, pick_device
from latentlab.experiments import autoencoder, contrastive, separation, shared, vae
from latentlab.files import write_json_atomic
from latentlab.models import ImageModel
from latentlab.training.schedule import kl_warmup
from latentlab.transforms import AUGMENTATIONS

HERE = Path(__file__).resolve().parent
SHAPE = (3, 32, 32)
PHASES = ("augment", "forward", "backward", "optimiser")
# label -> the experiment's Config options, as the benchmarks train them
MODELS: dict[str, dict[str, Any]] = {
    "autoencoder (conv)": {"experiment": "autoencoder", "latent_dim": 128},
    "vae (convvae)": {"experiment": "vae", "latent_dim": 128},
    "margin contrastive (resnet-16)": {"experiment": "contrastive", "encoder": "resnet",
                                       "width": 16, "latent_dim": 128},
    "margin contrastive (airbench-32)": {"experiment": "contrastive", "encoder": "airbench",
                                         "width": 32, "latent_dim": 128},
    "supcon, 2 views (resnet-16)": {"experiment": "supcon", "encoder": "resnet", "width": 16,
                                    "latent_dim": 128, "views": 2},
    "supcon, 1 view (resnet-16)": {"experiment": "supcon", "encoder": "resnet", "width": 16,
                                   "latent_dim": 128, "views": 1},
    # wider shapes (issue 40): channels in multiples of 32 fill the matrix tiles better
    "supcon, 1 view (resnet-32)": {"experiment": "supcon", "encoder": "resnet", "width": 32,
                                   "latent_dim": 128, "views": 1},
    "supcon, 1 view (resnet-64)": {"experiment": "supcon", "encoder": "resnet", "width": 64,
                                   "latent_dim": 128, "views": 1},
    # airbench's network: most arithmetic at 1/4 and 1/8 resolution, 4x wider there
    "supcon, 1 view (airbench-32)": {"experiment": "supcon", "encoder": "airbench",
                                     "width": 32, "latent_dim": 128, "views": 1},
    "supcon, 1 view (airbench-64)": {"experiment": "supcon", "encoder": "airbench",
                                     "width": 64, "latent_dim": 128, "views": 1},
    "simclr (resnet-16)": {"experiment": "simclr", "encoder": "resnet", "width": 16,
                           "latent_dim": 128},
    "separator (unet-32)": {"experiment": "separator", "model": "unet", "width": 32},
    # progressive resizing: the early steps train on 16x16 windows of each source
    "separator (unet-32, 16x16 windows)": {"experiment": "separator", "model": "unet",
                                           "width": 32, "crop": 16, "crop_until": 0.5},
}


class Clock:
    """Seconds per phase; waits for the GPU before each reading."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, dict.fromkeys(PHASES, 0.0)

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def timed(self, augment: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def run(images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            started = self.now()
            out = augment(images, *args, **kwargs)
            self.seconds["augment"] += self.now() - started
            return out
        return run


def case(config: Config, clock: Clock, images: torch.Tensor,
         labels: torch.Tensor) -> tuple[ImageModel, Callable[..., Any], Callable[[Any], Any]]:
    """(model, train step, batch(index) -> (x, y)) of config's experiment."""
    name = config.experiment
    original = dict(AUGMENTATIONS)
    AUGMENTATIONS.update({key: clock.timed(fn) for key, fn in original.items()})
    try:
        augmentation = shared.augmentation_name(config, SHAPE)
        if name == "autoencoder":
            model: Any = autoencoder.build(config, SHAPE)
            return model, autoencoder.reconstruction_step, lambda i: (images[i], labels[i])
        if name == "vae":
            model = vae.build(config, SHAPE)
            step = vae.ElboStep(kl_warmup(config, len(images), Path("none"), resume=False))
            return model, step, lambda i: (images[i], labels[i])
        if name == "separator":
            model = separation.build(config, SHAPE)
            pairs = MixturePairs(images)
            step = separation.make_train_step(
                config, None, separation.training_views(config, augmentation), pairs)
            return model, step, lambda i: (pairs.mixture_view()[i], i)
        model = contrastive.build(config, SHAPE)
        step = contrastive.make_step(config, AUGMENTATIONS[augmentation])
        return model, step, lambda i: (images[i], labels[i])
    finally:  # the steps hold their timed augmentation; others get the real ones
        AUGMENTATIONS.update(original)


def peak_kernels(dtype: torch.dtype, device: torch.device,
                 n: int = 2048) -> dict[str, tuple[Callable[[], Any], float]]:
    """The kernels the peak is the best of, each with its FLOPs (2 per multiply-add): an n x n
    matrix product, and 3x3 and 1x1 convolutions of the widths these networks use, run
    channels-last as they train (oneDNN convolutions beat the matmul library on some CPUs)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    kernels: dict[str, tuple[Callable[[], Any], float]] = {
        f"matmul {n}x{n}": (lambda: torch.mm(a, b), 2.0 * n**3)}
    for size, width in ((3, 128), (1, 256)):
        x = torch.randn(32, width, 32, 32, device=device).to(dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(width, width, size, size, device=device).to(dtype)
        w = w.contiguous(memory_format=torch.channels_last)
        flops = 2.0 * 32 * 32 * 32 * width * width * size * size
        kernels[f"conv {size}x{size} {width} ch, 32x32"] = (
            lambda x=x, w=w, size=size: F.conv2d(x, w, padding=size // 2), flops)
    return kernels


def peak_flops(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """FLOP/s of each of peak_kernels, the best of a few runs; "peak": the best kernel's."""
    clock, rates = Clock(device), {}
    with torch.no_grad():
        for name, (kernel, flops) in peak_kernels(dtype, device).items():
            best = float("inf")
            for _ in range(repeats + 1):  # the first warms up
                started = clock.now()
                kernel()
                best = min(best, clock.now() - started)
            rates[name] = flops / best
    return {**rates, "peak": max(rates.values())}


def step_flops(options: dict[str, Any], batch_size: int, device: torch.device) -> float:
    """FLOPs of one training step (forward and backward) of the model, counted."""
    from torch.utils.flop_counter import FlopCounterMode

    config = Config(batch_size=batch_size, precision="fp32", **options).validate()
    images = torch.randint(0, 256, (batch_size, *SHAPE), dtype=torch.uint8)
    model, step, batch = case(config, Clock(device), images, torch.randint(0, 10, (batch_size,)))
    model.to(device).train()
    x, y = batch(torch.arange(batch_size))
    x = model.prepare(x, model.input_size(), checked=False).to(device)
    with FlopCounterMode(display=False) as counter:
        step(model, x, y.to(device))["loss"].backward()
    return float(counter.get_total_flops())


def measure(options: dict[str, Any], bf16: bool, args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    """Images/s and seconds per phase of args.steps training steps, after two warm-up steps."""
    config = Config(batch_size=args.batch_size, precision="bf16" if bf16 else "fp32",
                    **options).validate()
    n = args.batch_size * (args.steps + 2)
    images = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    clock = Clock(device)
    model, step, batch = case(config, clock, images, labels)
    model.to(device).to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for number in range(args.steps + 2):
        if number == 2:  # warm-up done: start counting
            clock.seconds = dict.fromkeys(PHASES, 0.0)
            started = clock.now()
        x, y = batch(torch.arange(number * args.batch_size, (number + 1) * args.batch_size))
        begun = clock.now()
        x = model.prepare(x, model.input_size(), checked=False).to(device)
        augmented_before = clock.seconds["augment"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step(model, x, y.to(device))["loss"]
        forward_end = clock.now()
        clock.seconds["forward"] += forward_end - begun - (clock.seconds["augment"]
                                                           - augmented_before)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward_end = clock.now()
        clock.seconds["backward"] += backward_end - forward_end
        optimizer.step()
        clock.seconds["optimiser"] += clock.now() - backward_end
    total = clock.now() - started
    return {"images_per_second": args.steps * args.batch_size / total,
            "shares": {phase: clock.seconds[phase] / total for phase in PHASES}}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    amx = "AMX" if has_amx() else "no AMX"
    return f"{cpu_name()} ({amx}), {torch.get_num_threads()} CPU threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model and precision")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--only", nargs="*", choices=list(MODELS), help="models to time")
    parser.add_argument("--json",
                        default=str(HERE / "results" / "throughput" / "fp32-vs-bf16.json"))
    args = parser.parse_args()
    device = pick_device(args.device)
    kernels = {"fp32": peak_flops(torch.float32, device),
               "bf16": peak_flops(torch.bfloat16, device)}
    peak = {precision: rates["peak"] for precision, rates in kernels.items()}
    rows = []
    print(f"Training throughput on {machine(device)} (bf16 native: {bf16_native(device)}), "
          f"batch {args.batch_size}, {args.steps} steps; peak GFLOP/s (best of matmul and "
          "convolutions): " + ", ".join(
              f"{precision} {peak[precision] / 1e9:,.0f} ("
              + ", ".join(f"{name} {rate / 1e9:,.0f}" for name, rate in rates.items()
                          if name != "peak") + ")" for precision, rates in kernels.items()))
    print(f"{'model':<32}{'GFLOP/img':>10}{'fp32 img/s':>11}{'util.':>7}{'bf16 img/s':>11}"
          f"{'util.':>7}{'speed-up':>9}   bf16 time: " + " / ".join(PHASES))
    for label in args.only or list(MODELS):
        flops = step_flops(MODELS[label], args.batch_size, device) / args.batch_size
        row: dict[str, Any] = {"model": label, "flops_per_image": flops}
        for precision in ("fp32", "bf16"):
            measured = measure(MODELS[label], precision == "bf16", args, device)
            achieved = flops * measured["images_per_second"]
            row[precision] = {**measured, "achieved_flops": achieved,
                              "utilisation": achieved / peak[precision]}
        rows.append(row)
        fp32, bf16 = row["fp32"], row["bf16"]
        shares = " / ".join(f"{100 * bf16['shares'][p]:.0f}%" for p in PHASES)
        print(f"{label:<32}{flops / 1e9:>10.3f}{fp32['images_per_second']:>11.0f}"
              f"{100 * fp32['utilisation']:>6.1f}%{bf16['images_per_second']:>11.0f}"
              f"{100 * bf16['utilisation']:>6.1f}%"
              f"{bf16['images_per_second'] / fp32['images_per_second']:>8.2f}x   {shares}",
              flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(device),
                       "device": str(device), "arguments": vars(args),
                       "peak_flops": peak, "peak_kernels": kernels, "rows": rows}, out)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
