"""benchmarks/vae.py run as a script with a tiny budget."""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_benchmark_runs_with_a_tiny_budget(tmp_path, monkeypatch, capsys):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "vae.py"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--dataset", "digits", "--extra-train", "none", "--minutes", "0.01",
        "--train-limit", "64",
        "--test-limit", "32", "--latent-dim", "4", "--width", "8", "--context", "4",
        "--batch-size", "32", "--seeds", "2", "--json", str(tmp_path / "vae.json")])
    runpy.run_path(str(script), run_name="__main__")
    result = json.loads((tmp_path / "vae.json").read_text())
    assert result["dataset"] == "digits" and result["target"] == 4.0
    runs = result["runs"]
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:  # -ELBO = NLL + KL; the ConvVAE's likelihood covers its 1x32x32 input
        assert run["test_elbo"] == pytest.approx(
            -(run["test_reconstruction_nll"] + run["test_kl"]), rel=1e-5)
        assert run["test_bits_per_dim"] == pytest.approx(
            -run["test_elbo"] / (1024 * math.log(2)), rel=1e-5)
    a, b = (run["test_bits_per_dim"] for run in runs)
    assert result["test_bits_per_dim_mean"] == pytest.approx((a + b) / 2)
    assert result["test_bits_per_dim_std"] == pytest.approx(abs(a - b) / math.sqrt(2))
    assert result["target_met"] == (result["test_bits_per_dim_mean"] <= 4.0)
    assert "NVAE" in capsys.readouterr().out
