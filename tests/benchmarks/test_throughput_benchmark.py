"""benchmarks/throughput.py: the peak that utilisation is measured against."""

import runpy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT), run_name="throughput_benchmark")


def test_each_peak_kernel_states_the_flops_it_runs(bench):
    kernels = bench["peak_kernels"](torch.float32, torch.device("cpu"), n=64)
    assert any(name.startswith("conv") for name in kernels)
    for name, (kernel, flops) in kernels.items():
        with FlopCounterMode(display=False) as counter:
            kernel()
        assert counter.get_total_flops() == pytest.approx(flops), name


def test_the_peak_is_the_fastest_kernel(bench):
    rates = bench["peak_flops"](torch.float32, torch.device("cpu"), repeats=1)
    assert rates["peak"] == max(rate for name, rate in rates.items() if name != "peak") > 0
