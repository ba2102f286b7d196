"""Keep the best epoch by a validation key, and start a run from a finished one's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentlab.checkpoint import model_record, read_checkpoint, rebuild
from latentlab.config import Config
from latentlab.errors import UserError
from latentlab.files import save_atomic
from latentlab.models import ImageModel, UNetSeparator

CURVE = "val_psnr_vs_time"  # a separator's [training seconds, validation PSNR] per epoch


class BestWeights:
    """An epoch_end hook that keeps the weights of the epoch with the best validation score
    (history[key], highest or with lower_is_better lowest) in a file beside the run, so a
    run stopped by --time-budget (or resumed) ends with its best model; the test split plays
    no part in the choice. It answers True when it wrote, so the loop writes its checkpoint
    with it."""

    def __init__(self, model: ImageModel, config: Config, path: Path, resume: bool,
                 key: str = "val_psnr", lower_is_better: bool = False) -> None:
        self.model, self.config, self.path, self.key = model, config, path, key
        self.sign = -1.0 if lower_is_better else 1.0
        self.score, self.epoch = self.sign * float("-inf"), 0
        if resume and path.is_file():
            saved = read_checkpoint(path, "best weights")
            self.score, self.epoch = saved[key], saved["epoch"]
        else:
            path.unlink(missing_ok=True)

    def __call__(self, epoch: int, record: dict[str, float]) -> bool:
        if self.sign * record[self.key] <= self.sign * self.score:
            return False
        self.score, self.epoch = record[self.key], epoch
        save_atomic(model_record(self.model, self.config.to_dict(), epoch=epoch,
                                 **{self.key: self.score}), self.path)
        return True

    def restore(self) -> None:
        if self.path.is_file():
            self.model.load_state_dict(read_checkpoint(self.path, "best weights")["state_dict"])


def warm_start(model: ImageModel, path: str | Path) -> dict[str, Any]:
    """Copy the weights of the finished model at path into model (same class and
    hyperparameters, except that a U-Net may grow wider and grow bottleneck blocks, both
    without changing its output, and gain or lose its class head) and return what that file
    says about its own training."""
    saved = read_checkpoint(path, "model")
    finished = rebuild(saved, path)
    old, new = dict(finished.hparams()), dict(model.hparams())
    old.pop("class_head", None)
    new.pop("class_head", None)
    grown = new.pop("bottleneck_blocks", 0) >= old.pop("bottleneck_blocks", 0)
    if isinstance(model, UNetSeparator) and isinstance(finished, UNetSeparator):
        grown = grown and new.pop("width") >= old.pop("width")
    if type(finished) is not type(model) or old != new or not grown:
        raise UserError(
            f"--init-from {path} holds a {type(finished).__name__} {finished.hparams()}, but "
            f"this run builds a {type(model).__name__} {model.hparams()}; give the --model, "
            "--width and --dataset it was trained with (a U-Net's --width and "
            "--bottleneck-blocks may only grow)")
    if isinstance(model, UNetSeparator):
        model.grow_from(finished.state_dict())
    else:
        model.load_state_dict(finished.state_dict())
    record = totals_since_first_run(saved.get("metrics", {}), str(path))
    print(f"starting from the weights of {path} (trained "
          f"{record.get('train_seconds', 0) / 60:.0f} min, test PSNR "
          f"{record.get('test_psnr', float('nan')):.2f} dB)")
    return record


def totals_since_first_run(earlier: dict[str, Any], path: str) -> dict[str, Any]:
    """Training time, epochs and the validation curve since the very first run, when the
    run at path was itself a continuation."""
    before = earlier.get("initialised_from", {})
    record: dict[str, Any] = {"path": path}
    if "train_seconds" in earlier:
        record["train_seconds"] = before.get("train_seconds", 0.0) + earlier["train_seconds"]
    if "epochs" in earlier:
        record["epochs"] = before.get("epochs", 0) + earlier["epochs"]
    if "test_psnr" in earlier:
        record["test_psnr"] = earlier["test_psnr"]
    if CURVE in earlier:
        record[CURVE] = curve_since_first_run(earlier)
    return record


def curve_since_first_run(metrics: dict[str, Any], key: str = CURVE) -> list[list[float]]:
    """A run's [training seconds, validation PSNR] curve, timed from the first epoch of the
    first run: a continued run's curve follows the curve of the run it started from. Older
    runs' `psnr_vs_time` (test PSNR, or validation PSNR by another definition) is another
    measure and is never joined to it."""
    before = metrics.get("initialised_from", {})
    offset = before.get("train_seconds", 0.0)
    return before.get(key, []) + [[t + offset, psnr] for t, psnr in metrics.get(key, [])]
