"""The vae experiment and the vae-study command, end to end on a handful of digits."""

import json
import math

import numpy as np
import pytest
import torch

import latentlab
from latentlab.cli import main
from latentlab.data import load_dataset
from latentlab.experiments.vae import ElboStep
from latentlab.training.schedule import KLWarmup

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
    # the ELBO's terms and bits/dim by hand: -ELBO = NLL + KL, bits/dim = -ELBO / (D ln 2)
    # with D = 64 pixels of an 8x8 grey digit
    assert metrics["test_elbo"] == pytest.approx(
        -(metrics["test_reconstruction_nll"] + metrics["test_kl"]), rel=1e-5)
    assert metrics["test_bits_per_dim"] == pytest.approx(
        -metrics["test_elbo"] / (64 * math.log(2)), rel=1e-5)
    history = json.loads((run_dir / "history.json").read_text())
    assert {"train_reconstruction", "train_kl", "val_reconstruction", "val_kl"} <= set(
        history[-1])
    model = latentlab.load(run_dir / "vae_model.pth")
    # the saved model's posterior on the run's 60 test images: the KL in closed form,
    # 0.5 sum(mean^2 + var - ln var - 1), and the units whose mean varies by more than 0.01
    test_images = load_dataset("digits").limit(None, 60, seed=0).test_images
    with torch.no_grad():
        mean, log_variance = model.posterior(model.prepare(test_images, model.input_size()))
    saved = np.load(run_dir / "test_embeddings.npz")["embeddings"]
    assert torch.allclose(mean, torch.from_numpy(saved), atol=1e-6)  # the same test images
    kl = 0.5 * (mean.double() ** 2 + log_variance.double().exp() - log_variance - 1).sum(1)
    assert metrics["test_kl"] == pytest.approx(float(kl.mean()), rel=1e-4)
    variance = ((mean.double() - mean.double().mean(0)) ** 2).sum(0) / (len(mean) - 1)
    assert metrics["active_units"] == int((variance > 0.01).sum())
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


def test_elbo_step_warms_up_in_training_and_scores_at_beta_in_evaluation():
    from latentlab.models import MLPVAE

    model = MLPVAE((1, 8, 8), latent_dim=3)
    step = ElboStep(KLWarmup(beta=2.0, warmup_epochs=1, per_epoch=4))
    x = torch.rand(4, 1, 8, 8)
    model.train()
    torch.manual_seed(0)
    first = step(model, x, torch.zeros(4))  # weight 0: the loss is the reconstruction alone
    assert first["loss"].item() == pytest.approx(first["reconstruction"].item(), rel=1e-5)
    model.eval()
    logs = step(model, x, torch.zeros(4))
    assert logs["loss"].item() == pytest.approx(
        (logs["reconstruction"] + 2.0 * logs["kl"]).item(), rel=1e-5)
    assert step.warmup.done == 1  # evaluation takes no step of the schedule


def test_elbo_step_logs_both_terms():
    from latentlab.models import MLPVAE

    model = MLPVAE((1, 8, 8), latent_dim=3).eval()
    logs = ElboStep(KLWarmup(1.0, 0, 1))(model, torch.rand(4, 1, 8, 8), torch.zeros(4))
    assert set(logs) == {"loss", "reconstruction", "kl", "bits_per_dim"}
    assert logs["loss"].item() == pytest.approx((logs["reconstruction"] + logs["kl"]).item(),
                                                rel=1e-5)


def test_the_comparison_autoencoder_is_validated_on_the_validation_split(tmp_path,
                                                                          monkeypatch):
    from latentlab.config import Config
    from latentlab.data.splits import training_data
    from latentlab.experiments import vae

    config = Config(experiment="vae", dataset="digits", train_limit=200, test_limit=60,
                    epochs=1, batch_size=50, out=str(tmp_path)).validate()
    data = training_data(config)
    seen = []
    monkeypatch.setattr(vae, "fit", lambda model, job, steps, hooks=None: seen.append(job))
    vae.plain_autoencoder(config, data, tmp_path)
    [job] = seen
    assert torch.equal(job.val[0], data.val_images) and len(job.val[0]) != len(data.test_images)
