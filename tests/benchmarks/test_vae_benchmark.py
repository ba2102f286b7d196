"""benchmarks/vae.py run as a script with a tiny budget."""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

import latentlab
from latentlab.checkpoint import read_checkpoint
from latentlab.config import Config
from latentlab.data.splits import training_data
from latentlab.evaluate import evaluate_saved

from datafiles import write_official_and_twins

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


def test_saved_model_keeps_the_best_validation_epoch_and_its_scores(tmp_path, monkeypatch):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "vae.py"
    saved = tmp_path / "vae.pth"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--dataset", "digits", "--extra-train", "none", "--minutes", "0.05",
        "--train-limit", "64", "--test-limit", "32", "--latent-dim", "4", "--width", "8",
        "--context", "0", "--batch-size", "32", "--json", str(tmp_path / "vae.json"),
        "--save", str(saved)])
    runpy.run_path(str(script), run_name="__main__")
    run = json.loads((tmp_path / "vae.json").read_text())["runs"][0]
    best = min(run["history"], key=lambda h: h["val_bits_per_dim"])
    assert (run["best_epoch"], run["best_val_bits_per_dim"]) == (best["epoch"],
                                                                 best["val_bits_per_dim"])
    scores = read_checkpoint(saved, "model")["metrics"]
    assert scores["test_bits_per_dim"] == run["test_bits_per_dim"]
    assert scores["best_epoch"] == run["best_epoch"]
    model = latentlab.load(saved)
    row = evaluate_saved(str(saved), "digits", test_limit=32)
    assert row["test_bits_per_dim"] == pytest.approx(run["test_bits_per_dim"], rel=1e-4)
    assert tuple(model.sample(2, seed=0).shape) == (2, 1, 8, 8)


def test_save_refuses_several_seeds(tmp_path, monkeypatch):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "vae.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--seeds", "2", "--save",
                                      str(tmp_path / "vae.pth")])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(script), run_name="__main__")
    assert stopped.value.code == 2


def test_each_official_training_image_trains_oversample_times_an_epoch(tmp_path, monkeypatch):
    official, copy = write_official_and_twins(tmp_path)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "vae.py"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--dataset", official, "--extra-train", copy, "--oversample", "3",
        "--minutes", "0.01", "--latent-dim", "4", "--width", "8", "--context", "0",
        "--batch-size", "8", "--json", str(tmp_path / "vae.json")])
    runpy.run_path(str(script), run_name="__main__")
    run = json.loads((tmp_path / "vae.json").read_text())["runs"][0]
    own = training_data(Config(dataset=official, seed=0))
    both = training_data(Config(dataset=official, extra_train=copy, seed=0))
    extra = len(both.train_labels) - len(own.train_labels)
    assert extra > 0  # the twins of held-out images are left out, the rest of the copy trains
    assert run["epoch_images"] == 3 * len(own.train_labels) + extra
