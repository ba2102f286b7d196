"""--precision decides autocast in one place (devices.use_bf16), applied in one place: the
training loop. Outside it, models run in float32."""

from pathlib import Path

import pytest
import torch

from latentlab import devices
from latentlab.config import Config
from latentlab.data import load_dataset
from latentlab.devices import bf16_native, pick_device, use_bf16
from latentlab.errors import UserError
from latentlab.models import UNetSeparator
from latentlab.training import Job, Steps, fit

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


def recording_difference(model: UNetSeparator, seen: list[bool]) -> None:
    """Make model note, on each forward pass, whether autocast is on inside it."""
    difference = model.difference

    def recording(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(torch.is_autocast_enabled("cpu"))
        return difference(m)

    model.difference = recording  # type: ignore[method-assign]


def test_a_separator_outside_the_loop_runs_in_float32() -> None:
    torch.manual_seed(0)
    model = UNetSeparator((3, 16, 16), width=4).eval()
    seen: list[bool] = []
    recording_difference(model, seen)
    first, second = model.separate(torch.rand(2, 3, 16, 16))
    assert seen == [False] and first.dtype == second.dtype == torch.float32


@pytest.mark.parametrize("precision, autocast", [("fp32", False), ("bf16", True)])
def test_training_follows_precision_for_the_loop_and_the_separator(
        tmp_path: Path, precision: str, autocast: bool) -> None:
    data = load_dataset("digits").limit(64, 16)
    config = Config(experiment="separator", model="unet", width=4, epochs=1, batch_size=32,
                    precision=precision, out=str(tmp_path)).validate()
    model = UNetSeparator(data.image_shape, width=4)
    inside: list[bool] = []
    recording_difference(model, inside)
    outside: list[bool] = []

    def step(model: UNetSeparator, x: torch.Tensor, y: torch.Tensor) -> dict:
        outside.append(torch.is_autocast_enabled("cpu"))
        d, _ = model(x)
        assert d.dtype == torch.float32
        return {"loss": d.square().mean()}

    job = Job(config, (data.train_images, data.train_labels),
              (data.test_images, data.test_labels), tmp_path / "checkpoint.pth")
    fit(model, job, Steps(step, step))
    assert outside and set(outside[:2]) == {autocast}  # the two training steps
    assert inside and set(inside) == {autocast}  # and validation, at the same precision


def test_cpu_name_and_amx_are_read_from_cpuinfo(monkeypatch):
    text = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n"
            "flags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n")
    monkeypatch.setattr(devices, "cpu_info", lambda: text)
    assert (devices.cpu_name(), devices.has_amx()) == ("Intel(R) Xeon(R) Platinum 8488C", True)
    monkeypatch.setattr(devices, "cpu_info", lambda: "flags\t\t: fpu avx512_bf16\n")
    assert not devices.has_amx() and devices.cpu_name()  # falls back to the platform's name
