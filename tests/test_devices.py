"""--precision decides autocast in one place (devices.use_bf16), for the training loop and
for separators, which autocast on their own."""

from pathlib import Path

import pytest
import torch

from latentlab.checkpoint import load, model_record
from latentlab.config import Config
from latentlab.data import load_dataset
from latentlab.devices import bf16_native, pick_device, use_bf16
from latentlab.errors import UserError
from latentlab.files import save_atomic
from latentlab.models import UNetSeparator
from latentlab.training import fit

CPU = torch.device("cpu")


def test_use_bf16_follows_the_precision_asked_for() -> None:
    assert use_bf16("fp32", CPU) is False
    assert use_bf16("bf16", CPU) is True
    assert use_bf16("auto", CPU) == bf16_native(CPU)
    with pytest.raises(UserError, match="--precision"):
        use_bf16("fp16", CPU)


def test_pick_device() -> None:
    assert pick_device("cpu") == CPU
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def recording_split(model: UNetSeparator, seen: list[bool]) -> None:
    """Make model note, on each forward pass, whether autocast is on inside it."""
    split = model.split

    def recording(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(torch.is_autocast_enabled("cpu"))
        return split(m)

    model.split = recording  # type: ignore[method-assign]


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_a_separator_runs_at_the_precision_asked_for(precision: str, autocast: bool) -> None:
    torch.manual_seed(0)
    model = UNetSeparator((3, 16, 16), width=4).eval()
    m = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        reference = model.split(m)[0]  # float32, no autocast
        model.precision = precision
        seen: list[bool] = []
        recording_split(model, seen)
        d, _ = model(m)
    assert seen == [autocast]
    assert d.dtype == torch.float32
    assert torch.equal(d, reference) is not autocast  # fp32: exactly the float32 answer


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_training_follows_precision_for_the_loop_and_the_separator(
        tmp_path: Path, precision: str, autocast: bool) -> None:
    data = load_dataset("digits").limit(64, 16)
    config = Config(experiment="separator", model="unet", width=4, epochs=1, batch_size=32,
                    precision=precision, out=str(tmp_path)).validate()
    model = UNetSeparator(data.image_shape, width=4)
    inside: list[bool] = []
    recording_split(model, inside)
    outside: list[bool] = []

    def step(model: UNetSeparator, x: torch.Tensor, y: torch.Tensor) -> dict:
        outside.append(torch.is_autocast_enabled("cpu"))
        d, _ = model(x)
        return {"loss": d.square().mean()}

    fit(model, config, data.train_images, data.train_labels, data.test_images,
        data.test_labels, step, step, tmp_path / "checkpoint.pth")
    assert model.precision == precision
    assert outside and set(outside[:2]) == {autocast}  # the two training steps
    assert inside and set(inside) == {autocast}


@pytest.mark.parametrize("saved, precision", [({"precision": "fp32"}, "fp32"), ({}, "auto")])
def test_a_loaded_model_keeps_the_precision_it_was_trained_with(
        tmp_path: Path, saved: dict, precision: str) -> None:
    save_atomic(model_record(UNetSeparator((3, 16, 16), width=4), saved), tmp_path / "m.pth")
    assert load(tmp_path / "m.pth").precision == precision
