"""How fast each candidate contrastive encoder trains on this machine, in images per second,
and how many CIFAR-10 epochs that buys in a time budget.

    python benchmarks/encoder_throughput.py --batch-size 256 --steps 5

One step = two augmented views of every image (SupCon/SimCLR), forward, loss, backward,
AdamW: exactly what `latentlab train supcon` does per batch. Writes
benchmarks/results/encoder_throughput.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from latentlab.config import Config
from latentlab.experiments.contrastive import build, make_step
from latentlab.transforms import AUGMENTATIONS

CANDIDATES = [("resnet", 8), ("resnet", 12), ("resnet", 16), ("resnet", 24), ("resnet", 32),
              ("conv", 16), ("conv", 32)]
CIFAR_TRAIN = 50_000


def measure(encoder: str, width: int, batch_size: int, steps: int, augmentation: str,
            device: torch.device) -> float:
    config = Config(experiment="supcon", encoder=encoder, width=width, latent_dim=128,
                    augmentation=augmentation, batch_size=batch_size)
    model = build(config, (3, 32, 32)).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = make_step(config, AUGMENTATIONS[augmentation])
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    x = model.prepare(images, model.input_size())

    def one_step() -> None:
        loss = step(model, x, labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one_step()  # warm-up: oneDNN builds its kernels on the first call
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per encoder")
    parser.add_argument("--minutes", type=float, default=30, help="budget to convert into epochs")
    parser.add_argument("--augmentation", default="simclr", choices=sorted(AUGMENTATIONS))
    parser.add_argument("--only", nargs="*", help="encoder:width pairs, e.g. resnet:16 conv:32")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    candidates = ([(c.split(":")[0], int(c.split(":")[1])) for c in args.only] if args.only
                  else CANDIDATES)
    rows = []
    print(f"{'encoder':<8}{'width':>6}{'params':>10}{'img/s':>9}{'epochs in budget':>18}")
    for encoder, width in candidates:
        rate = measure(encoder, width, args.batch_size, args.steps, args.augmentation, device)
        params = sum(p.numel() for p in build(Config(experiment="supcon", encoder=encoder,
                                                     width=width, latent_dim=128),
                                              (3, 32, 32)).parameters())
        epochs = rate * 60 * args.minutes / CIFAR_TRAIN
        rows.append({"encoder": encoder, "width": width, "parameters": params,
                     "images_per_second": round(rate, 1), "epochs_in_budget": round(epochs, 1)})
        print(f"{encoder:<8}{width:>6}{params:>10,}{rate:>9.0f}{epochs:>18.1f}", flush=True)
    out = Path(__file__).parent / "results" / "encoder_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
        platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": str(device), "batch_size": args.batch_size, "augmentation": args.augmentation,
        "minutes": args.minutes, "rows": rows}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
