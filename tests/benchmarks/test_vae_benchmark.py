"""benchmarks/vae.py run as a script with a tiny budget."""

import json
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
        "--batch-size", "32", "--json", str(tmp_path / "vae.json")])
    runpy.run_path(str(script), run_name="__main__")
    result = json.loads((tmp_path / "vae.json").read_text())
    assert result["dataset"] == "digits" and result["target"] == 4.0
    assert 0 < result["test_bits_per_dim_mean"] < 16
    assert "NVAE" in capsys.readouterr().out
