"""Model files that rebuild themselves: `latentlab.load(path)`."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from latentlab.errors import UserError

FORMAT = "latentlab"
FORMAT_VERSION = 1


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """Load a latentlab file, turning every way it can be wrong into one clear UserError.

    Files are read with weights_only=True, so reading one never runs code from it; a file
    that needs more (another program's pickle) is refused, not unpickled."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a latentlab {what}; give the .pth file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    not_ours = f"{path} is not a latentlab {what}"
    # latentlab writes PyTorch's zip format; anything else is another kind of file or damaged
    try:
        if not zipfile.is_zipfile(path):
            raise UserError(f"{not_ours}: it is not a PyTorch file that latentlab wrote "
                            "(another kind of file, or damaged); give a .pth file written "
                            "by latentlab")
    except OSError as error:
        raise UserError(f"cannot read {what} {path} ({error.strerror or error})") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects beyond tensors and plain containers
        raise UserError(f"{not_ours}: it holds Python objects that latentlab files never "
                        "hold, and latentlab does not unpickle them (that could run code "
                        "from the file); give a .pth file written by latentlab") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError):
        raise UserError(f"{not_ours}: it is truncated or damaged; give a .pth file written by "
                        "latentlab") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UserError(f"{path} is a PyTorch file but not a latentlab {what} "
                        "(it has no latentlab header); give a file written by latentlab")
    if saved.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer latentlab "
                        f"(format {saved['format_version']}); upgrade latentlab to read it")
    return saved


def model_record(model: Any, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Everything needed to rebuild a trained model without the training code's config."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "model",
            "model_class": type(model).__name__, "hparams": model.hparams(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": config, **extra}


def load(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild a trained latentlab model from its .pth file, in eval mode, ready for use.

    The result has `.embed(images)` and, depending on its kind, `.reconstruct(images)`,
    `.sample(n)` or `.separate(mixtures)`; images are (N, C, H, W) tensors (float in [0, 1]
    or uint8), numpy arrays or PIL images at any size and channel count (they are converted
    to what the model was trained on; see `ImageModel.prepare`).
    """
    return rebuild(read_checkpoint(path, "model"), path).to(device).eval()


def rebuild(saved: dict[str, Any], path: str | Path) -> Any:
    """The model that a record read from path by read_checkpoint describes, with its weights."""
    from latentlab.models import MODELS

    if saved.get("kind") != "model":
        raise UserError(f"{path} is a training checkpoint, not a finished model; "
                        "load the <name>_model.pth file beside it")
    cls = MODELS.get(saved.get("model_class", ""))
    if cls is None:
        raise UserError(f"{path} holds an unknown model {saved.get('model_class')!r}")
    damaged = (f"{path} is damaged or was written by another version of latentlab: its "
               f"{cls.__name__}")
    try:
        model = cls(**saved["hparams"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{damaged} settings cannot be built ({error})") from None
    try:
        fit = model.load_state_dict(saved["state_dict"], strict=False)
    except (KeyError, TypeError, AttributeError, RuntimeError):  # e.g. a tensor of another shape
        raise UserError(f"{damaged} weights do not fit it") from None
    if fit.missing_keys or fit.unexpected_keys:
        raise UserError(f"{damaged} weights do not fit it ({len(fit.missing_keys)} missing, "
                        f"{len(fit.unexpected_keys)} unexpected)")
    model.config = saved.get("config", {})
    model.class_names = saved.get("class_names", [])
    return model
