"""The floor every learned embedding must beat: k=20 cosine kNN accuracy on raw pixels.

    python benchmarks/raw_pixels.py [--dataset folder:../shared/datasets/cifar10-jpeg.zip]

Prints the accuracy and writes benchmarks/results/embeddings/raw_pixels-<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from latentlab.data import load_dataset
from latentlab.metrics.embeddings import raw_pixel_knn_accuracy

HERE = Path(__file__).resolve().parent
CIFAR = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpeg.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=f"folder:{CIFAR}")
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    started = time.perf_counter()
    accuracy = raw_pixel_knn_accuracy(data.train_images, data.train_labels, data.test_images,
                                      data.test_labels)
    print(f"raw-pixel kNN accuracy (k=20, cosine) on {args.dataset}: {accuracy:.4f} "
          f"({time.perf_counter() - started:.0f} s)")
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", Path(args.dataset.removeprefix("folder:")).stem)
    out = HERE / "results" / "embeddings" / f"raw_pixels-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "dataset": args.dataset,
                               "raw_pixel_knn_accuracy": accuracy}, indent=2) + "\n")


if __name__ == "__main__":
    main()
