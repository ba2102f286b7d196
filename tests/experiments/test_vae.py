"""The vae experiment and the vae-study command, end to end on a handful of digits."""

import json

import pytest
import torch

import latentlab
from latentlab.cli import main
from latentlab.experiments.vae import ElboStep

VAE_FILES = ["vae_loss.png", "vae_samples.png", "vae_interpolations.png", "vae_embeddings.png",
             "vae_model.pth", "metrics.json"]


@pytest.mark.slow
def test_train_vae_writes_every_file(tmp_path):
    code = main(["train", "vae", "--dataset", "digits", "--epochs", "2", "--train-limit", "200",
                 "--test-limit", "60", "--tsne-points", "60", "--latent-dim", "8",
                 "--out", str(tmp_path)])
    assert code == 0
    run_dir = tmp_path / "vae"
    for name in VAE_FILES:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("knn_accuracy", "linear_probe_accuracy", "test_elbo", "test_kl",
                "test_bits_per_dim", "active_units"):
        assert key in metrics, key
    assert metrics["test_elbo"] < 0 and metrics["test_kl"] >= 0
    assert 0 < metrics["test_bits_per_dim"] < 16 and 0 <= metrics["active_units"] <= 8
    history = json.loads((run_dir / "history.json").read_text())
    assert {"train_reconstruction", "train_kl", "val_reconstruction", "val_kl"} <= set(
        history[-1])
    model = latentlab.load(run_dir / "vae_model.pth")
    samples = model.sample(3)
    assert samples.shape == (3, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1


@pytest.mark.slow
def test_vae_study_writes_figure_and_summary(tmp_path):
    code = main(["vae-study", "--dataset", "digits", "--epochs", "1", "--train-limit", "120",
                 "--test-limit", "40", "--latent-dim", "4", "--betas", "0.5,2",
                 "--out", str(tmp_path)])
    assert code == 0
    folder = tmp_path / "vae_study"
    assert (folder / "vae_study.png").is_file()
    summary = json.loads((folder / "vae_study.json").read_text())
    assert [r["beta"] for r in summary["runs"]] == [0.5, 2.0]
    for run in summary["runs"]:
        assert {"reconstruction_mse", "test_kl", "active_units", "knn_accuracy"} <= set(run)


@pytest.mark.parametrize("betas", ["", "a,b", "-1,2", "1,1", "1,inf"])
def test_vae_study_rejects_bad_betas(tmp_path, capsys, betas):
    assert main(["vae-study", "--dataset", "digits", f"--betas={betas}",
                 "--out", str(tmp_path)]) == 2
    assert "--betas" in capsys.readouterr().err


def test_resnet_encoder_is_refused(tmp_path, capsys):
    assert main(["train", "vae", "--dataset", "digits", "--encoder", "resnet",
                 "--out", str(tmp_path)]) == 2
    assert "--encoder resnet" in capsys.readouterr().err


def test_kl_weight_warms_up_linearly_in_training_only():
    step = ElboStep(beta=2.0, warmup_steps=4)
    weights = [step.kl_weight()]
    for _ in range(5):
        step.step += 1
        weights.append(step.kl_weight())
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_elbo_step_logs_both_terms():
    from latentlab.models import MLPVAE

    model = MLPVAE((1, 8, 8), latent_dim=3).eval()
    logs = ElboStep(beta=1.0, warmup_steps=0)(model, torch.rand(4, 1, 8, 8), torch.zeros(4))
    assert set(logs) == {"loss", "reconstruction", "kl", "bits_per_dim"}
    assert logs["loss"].item() == pytest.approx((logs["reconstruction"] + logs["kl"]).item(),
                                                rel=1e-5)
