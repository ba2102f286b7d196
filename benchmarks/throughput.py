"""Training throughput of every model in fp32 and bf16, measured in one run, with the share of
each step spent in augmentation, forward (with the loss), backward and the optimiser, and
how much of the machine's own peak it uses.

    python benchmarks/throughput.py [--steps 8] [--batch-size 256] [--device auto]

Each model trains on random CIFAR-10-shaped images (speed does not depend on the pixels)
with the training step of its experiment, as the training loop runs it: channels-last,
bf16 autocast or not, AdamW.

Utilisation = achieved FLOP/s / peak FLOP/s, both measured in this run:
- peak: the best of a few 2048x2048 matrix products at each precision (2 n^3 FLOPs each),
  timed on the same threads the models train on;
- achieved: the FLOPs of one training step (forward and backward, augmentation and loss
  included) counted by torch.utils.flop_counter.FlopCounterMode, which counts 2 FLOPs per
  multiply-add of every matmul and convolution (elementwise work is not counted, so this
  is a floor), times the steps per second measured.
Prints a table and writes benchmarks/results/throughput/fp32-vs-bf16.json."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from latentlab.config import Config
from latentlab.data.mixtures import MixturePairs
from latentlab.devices import bf16_native, pick_device
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
    "supcon, 2 views (resnet-16)": {"experiment": "supcon", "encoder": "resnet", "width": 16,
                                    "latent_dim": 128, "views": 2},
    "supcon, 1 view (resnet-16)": {"experiment": "supcon", "encoder": "resnet", "width": 16,
                                   "latent_dim": 128, "views": 1},
    # wider shapes (issue 40): channels in multiples of 32 fill the matrix tiles better
    "supcon, 1 view (resnet-32)": {"experiment": "supcon", "encoder": "resnet", "width": 32,
                                   "latent_dim": 128, "views": 1},
    "supcon, 1 view (resnet-64)": {"experiment": "supcon", "encoder": "resnet", "width": 64,
                                   "latent_dim": 128, "views": 1},
    "simclr (resnet-16)": {"experiment": "simclr", "encoder": "resnet", "width": 16,
                           "latent_dim": 128},
    "separator (unet-32)": {"experiment": "separator", "model": "unet", "width": 32},
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
            step = separation.make_train_step(config, None, augmentation, pairs)
            return model, step, lambda i: (pairs.mixture_view()[i], i)
        model = contrastive.build(config, SHAPE)
        step = contrastive.make_step(config, AUGMENTATIONS[augmentation])
        return model, step, lambda i: (images[i], labels[i])
    finally:  # the steps hold their timed augmentation; others get the real ones
        AUGMENTATIONS.update(original)


def peak_flops(dtype: torch.dtype, device: torch.device, n: int = 2048,
               repeats: int = 5) -> float:
    """FLOP/s of the best of a few n x n matrix products at dtype (2 n^3 FLOPs each)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    clock, best = Clock(device), float("inf")
    for _ in range(repeats + 1):  # the first warms up
        started = clock.now()
        torch.mm(a, b)
        best = min(best, clock.now() - started)
    return 2 * n**3 / best


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


def cpu_name() -> tuple[str, bool]:
    """The CPU's model name and whether it has AMX tiles (Linux; else the platform's)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), False
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.machine())
    return name, " amx_bf16" in info


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
    name, amx = cpu_name()
    return f"{name} ({'AMX' if amx else 'no AMX'}), {torch.get_num_threads()} CPU threads"


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
    peak = {"fp32": peak_flops(torch.float32, device), "bf16": peak_flops(torch.bfloat16, device)}
    rows = []
    print(f"Training throughput on {machine(device)} (bf16 native: {bf16_native(device)}), "
          f"batch {args.batch_size}, {args.steps} steps; peak of a 2048x2048 matmul: "
          f"fp32 {peak['fp32'] / 1e9:,.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:,.0f} GFLOP/s")
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
                       "peak_flops": peak, "rows": rows}, out)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
