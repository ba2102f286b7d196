"""Training throughput (images per second) of every model, through the real training loop.

    python benchmarks/throughput.py [--dataset folder:../shared/datasets/cifar10-jpeg.zip]
                                    [--device auto] [--images 4096]

Prints a table and writes benchmarks/results/throughput.json. The first epoch's throughput
includes start-up, so each model trains two epochs and the second is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from latentlab.cli import main as latentlab
from latentlab.config import Config
from latentlab.experiments import EXPERIMENTS
from latentlab.training import pick_device

HERE = Path(__file__).resolve().parent
CIFAR = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpeg.zip"
# separator architectures to time besides the default (looked up when the experiment exists)
SEPARATORS = ("two-decoder-ae", "two-decoder-vae", "unet")


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def runs(experiments: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for name in experiments:
        if name == "separator":
            out += [(f"separator/{m}", ["separator", "--model", m]) for m in SEPARATORS]
        else:
            out.append((name, [name]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=f"folder:{CIFAR}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--only", nargs="*", help="experiments to time (default: all)")
    args = parser.parse_args()
    device = pick_device(args.device)
    precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    rows = []
    for label, command in runs(args.only or list(EXPERIMENTS)):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            code = latentlab(["train", *command, "--dataset", args.dataset, "--epochs", "2",
                              "--batch-size", str(args.batch_size), "--device", args.device,
                              "--train-limit", str(args.images), "--test-limit", "500",
                              "--out", out])
            if code != 0:
                rows.append({"model": label, "error": f"exit code {code}"})
                continue
            config = Config(experiment=command[0], out=out,
                            model=command[2] if len(command) > 2 else "unet")
            history = json.loads((config.run_dir / "history.json").read_text())
            rows.append({"model": label, "images_per_second": history[-1]["images_per_second"],
                         "batch_size": args.batch_size, "precision": precision,
                         "wall_seconds": time.perf_counter() - started})
    print(f"\nTraining throughput on {machine(device)}, dataset {args.dataset}")
    print(f"{'model':<28}{'images/s':>10}{'batch':>7}{'precision':>11}")
    for row in rows:
        if "error" in row:
            print(f"{row['model']:<28}{row['error']:>28}")
        else:
            print(f"{row['model']:<28}{row['images_per_second']:>10.0f}{row['batch_size']:>7}"
                  f"{row['precision']:>11}")
    (HERE / "results").mkdir(exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(device),
              "device": str(device), "dataset": args.dataset, "rows": rows}
    path = HERE / "results" / f"throughput-{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
