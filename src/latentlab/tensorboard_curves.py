"""Training curves as TensorBoard event files, for `--tensorboard`.

Optional: needs the tensorboard package (pip install 'latentlab[tensorboard]'). Without it
training goes on and the curves stay in history.json and the loss figure."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path

MISSING = ("latentlab: --tensorboard needs the tensorboard package "
           "(pip install 'latentlab[tensorboard]'); skipping TensorBoard event files, "
           "the training curves are still in history.json")


def available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def warn_if_unavailable() -> None:
    """Say at the start of a run, not after it, that no event files will be written."""
    if not available():
        print(MISSING, file=sys.stderr)


def scalar_tags(record: dict[str, float]) -> dict[str, float]:
    """One history entry -> TensorBoard tags: train_loss -> loss/train, val_loss -> loss/val
    (so TensorBoard draws both splits in one chart); other numbers keep their name."""
    tags = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        split, _, name = key.partition("_")
        tags[f"{name}/{split}" if split in ("train", "val") and name else key] = float(value)
    return tags


def write_curves(history: Sequence[dict[str, float]], folder: str | Path) -> Path | None:
    """Write one scalar per history key and epoch under folder; None without tensorboard."""
    if not available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        for record in history:
            for tag, value in scalar_tags(record).items():
                writer.add_scalar(tag, value, global_step=int(record["epoch"]))
    finally:
        writer.close()
    return Path(folder)
