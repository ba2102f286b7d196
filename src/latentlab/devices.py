"""Where a model runs and at what precision, decided in one place.

`--device` picks the device (`pick_device`); `--precision` picks whether convolutions and
matrix products run under bfloat16 autocast (`use_bf16`): fp32 never, bf16 always, auto
where the hardware runs bfloat16 natively (`bf16_native`)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from latentlab.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(name: str) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return device


@functools.cache
def cpu_info() -> str:
    """/proc/cpuinfo's text ("" off Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (else the platform's), written beside every benchmark figure:
    speed differs between machines."""
    return next((line.split(":", 1)[1].strip() for line in cpu_info().splitlines()
                 if line.startswith("model name")),
                platform.processor() or platform.machine() or "unknown CPU")


def has_amx() -> bool:
    """Whether the CPU has AMX tiles for bfloat16 (Linux only; else False)."""
    return " amx_bf16" in cpu_info()


def bf16_native(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively (CPUs with AVX-512 BF16 or AMX, recent GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run under bfloat16 autocast: --precision fp32, bf16 or auto (native only)."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if precision == "auto":
        return bf16_native(device)
    raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
