"""The trained models that ship in pretrained/ (a separator, a VAE, SupCon and SimCLR
encoders): they load, keep their promises on real pixels they never saw, and the README
quotes the scores their own files record."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import latentlab
from latentlab.checkpoint import read_checkpoint
from latentlab.cli import main
from latentlab.data import load_dataset
from latentlab.metrics.embeddings import embed_all, embedding_metrics, subsample
from latentlab.metrics.images import separation_scores
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.models import ContrastiveModel, Separator

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pretrained" / "cifar10_unet_separator.pth"
VAE = ROOT / "pretrained" / "cifar10_vae.pth"
SUPCON = ROOT / "pretrained" / "cifar10_supcon.pth"
SIMCLR = ROOT / "pretrained" / "cifar10_simclr.pth"
ENCODERS = [SUPCON, SIMCLR]
OFFICIAL = (ROOT / "../shared/datasets/cifar10-official-5k.zip").resolve()


@pytest.fixture(scope="module")
def model():
    return latentlab.load(MODEL)


def test_it_is_a_cifar10_separator_whose_outputs_average_to_the_mixture(model):
    assert isinstance(model, Separator)
    assert model.image_shape == (3, 32, 32)
    m = torch.rand(4, 3, 32, 32)
    first, second = model.separate(m)
    assert torch.allclose((first + second) / 2, m, atol=1e-6)
    assert not torch.allclose(first, second, atol=1e-2)  # it does split the mixture


def test_the_readme_quotes_the_score_and_training_time_the_file_records():
    metrics = read_checkpoint(MODEL, "model")["metrics"]
    section = readme_paragraph(MODEL)
    assert f"{metrics['test_psnr']:.2f} dB" in section
    assert f"{metrics['test_ssim']:.3f}" in section
    assert f"{metrics['shortcut_ratio']:.2f}" in section
    assert f"{metrics['jpeg_twins']['test_psnr']:.2f} dB" in section
    earlier = metrics.get("initialised_from", {}).get("train_seconds", 0.0)
    assert_quotes_minutes(section, earlier + metrics["train_seconds"])


def readme_paragraph(model: Path) -> str:
    """The README's words on one shipped model: from its name to the next model's."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Trained models"):]
    section = section[:section.index("\n## ", 1)]
    section = section[section.index(f"`pretrained/{model.name}`"):]
    end = section.find("`pretrained/", 1)
    return section if end < 0 else section[:end]


def assert_quotes_minutes(paragraph: str, seconds: float) -> None:
    minutes = re.search(r"(\d+)\s+minutes", paragraph)  # the line may break between
    assert minutes and abs(int(minutes.group(1)) - seconds / 60) < 1


def test_the_separate_command_takes_it(tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (32, 32), (220, 30, 30)).save(a)
    Image.new("RGB", (32, 32), (20, 40, 230)).save(b)
    assert main(["separate", str(MODEL), "--mix", str(a), str(b),
                 "--out", str(tmp_path / "out")]) == 0
    assert "PSNR against the originals" in capsys.readouterr().out
    assert (tmp_path / "out" / "separation.png").is_file()


def test_its_file_records_where_it_was_trained_and_scored():
    saved = read_checkpoint(MODEL, "model")
    config, metrics = saved["config"], saved["metrics"]
    assert config["dataset"].endswith("cifar10-official-5k.zip")  # held-out images: real pixels
    assert config["extra_train"].endswith("cifar10-jpeg.zip")  # less their twins
    assert {"shortcut_ratio", "jpeg_twins", "best_val_psnr", "test_psnr"} <= set(metrics)


@pytest.mark.skipif(not OFFICIAL.is_file(),
                    reason="needs ../shared/datasets/cifar10-official-5k.zip")
def test_it_beats_returning_the_mixture_on_official_pixels_it_never_saw(model):
    seed = read_checkpoint(MODEL, "model")["config"]["seed"]
    images = load_dataset(f"folder:{OFFICIAL}", seed=seed).test_images[::16][:64]
    images = images.float() / 255  # 64 held-out images, spread over the classes
    x1, x2 = images[:32], images[32:]
    m = (x1 + x2) / 2
    separated = separation_scores(*model.separate(m), x1, x2)["psnr"].mean()
    baseline = separation_scores(m, m, x1, x2)["psnr"].mean()
    assert separated > baseline + 1.0


@pytest.fixture(scope="module")
def vae():
    return latentlab.load(VAE)


def test_the_vae_embeds_and_samples_cifar10_images(vae):
    saved = read_checkpoint(VAE, "model")
    assert saved["config"]["dataset"].endswith("cifar10-official-5k.zip")
    assert saved["config"]["extra_train"].endswith("cifar10-jpeg.zip")
    assert tuple(vae.embed(torch.rand(3, 3, 32, 32)).shape) == (3, vae.latent_dim)
    samples = vae.sample(2, seed=0)
    assert tuple(samples.shape) == (2, 3, 32, 32) and 0 <= samples.min() <= samples.max() <= 1
    assert not torch.allclose(samples[0], samples[1], atol=1e-2)


def test_the_readme_quotes_the_bits_per_dim_and_time_the_vae_file_records():
    metrics = read_checkpoint(VAE, "model")["metrics"]
    section = readme_paragraph(VAE)
    assert f"{metrics['test_bits_per_dim']:.2f} bits/dim" in section
    assert f"{metrics['jpeg_twins_bits_per_dim']:.2f}" in section
    assert_quotes_minutes(section, metrics["train_seconds"])


@pytest.mark.skipif(not OFFICIAL.is_file(),
                    reason="needs ../shared/datasets/cifar10-official-5k.zip")
def test_the_vae_scores_official_pixels_it_never_saw_as_its_file_says(vae):
    seed = read_checkpoint(VAE, "model")["config"]["seed"]
    images = load_dataset(f"folder:{OFFICIAL}", seed=seed).test_images[::8][:128]
    recorded = read_checkpoint(VAE, "model")["metrics"]["test_bits_per_dim"]
    assert elbo_metrics(vae, images)["test_bits_per_dim"] == pytest.approx(recorded, abs=0.15)


def test_the_embed_command_takes_the_vae(tmp_path):
    for name, colour in (("red", (220, 30, 30)), ("blue", (20, 40, 230))):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.new("RGB", (40, 40), colour).save(tmp_path / "images" / name / "a.png")
    assert main(["embed", str(VAE), str(tmp_path / "images"), "--out",
                 str(tmp_path / "out")]) == 0
    vectors = [np.load(path) for path in (tmp_path / "out").glob("*.npy")]
    assert any(v.shape == (2, read_checkpoint(VAE, "model")["hparams"]["latent_dim"])
               for v in vectors)


@pytest.mark.parametrize("path", ENCODERS, ids=lambda path: path.stem)
def test_the_encoders_embed_cifar10_images_on_the_unit_sphere(path):
    encoder = latentlab.load(path)
    assert isinstance(encoder, ContrastiveModel) and encoder.image_shape == (3, 32, 32)
    z = encoder.embed(torch.rand(3, 3, 32, 32))
    assert tuple(z.shape) == (3, read_checkpoint(path, "model")["hparams"]["latent_dim"])
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-4)
    assert path.stat().st_size <= 20 * 2**20  # the bound on a shipped model


@pytest.mark.parametrize("path", ENCODERS, ids=lambda path: path.stem)
def test_their_files_record_the_twins_left_out_and_the_real_pixel_scores(path):
    saved = read_checkpoint(path, "model")
    config, metrics = saved["config"], saved["metrics"]
    assert config["exclude"].endswith("cifar10-official-5k-jpeg-twins.txt")
    assert config["dataset"].endswith("cifar10-jpeg.zip")
    assert config["experiment"] == path.stem.removeprefix("cifar10_")
    flips = "_flips" if saved["hparams"]["mirror"] else ""
    assert metrics[f"real_knn{flips}"] > metrics[f"test_knn{flips}"] - 0.05 > 0.5


@pytest.mark.parametrize("path", ENCODERS, ids=lambda path: path.stem)
def test_the_readme_quotes_the_knn_and_time_each_encoder_file_records(path):
    saved = read_checkpoint(path, "model")
    metrics, flips = saved["metrics"], "_flips" if saved["hparams"]["mirror"] else ""
    section = readme_paragraph(path)
    assert f"kNN {metrics[f'real_knn{flips}']:.3f}" in section
    assert f"probe {metrics[f'real_linear_probe{flips}']:.3f}" in section
    assert_quotes_minutes(section, metrics["train_seconds"])


@pytest.mark.skipif(not OFFICIAL.is_file(),
                    reason="needs ../shared/datasets/cifar10-official-5k.zip")
@pytest.mark.parametrize(("path", "least"), [(SUPCON, 0.8), (SIMCLR, 0.5)],
                         ids=["supcon", "simclr"])
def test_the_encoders_sort_official_pixels_by_class(path, least):
    data = load_dataset(f"folder:{OFFICIAL}", seed=0)
    pick = subsample(len(data.train_labels), 1000, seed=0)
    images, labels = data.train_images[pick], data.train_labels[pick]
    z = embed_all(latentlab.load(path), images)
    scores = embedding_metrics(z[:800], labels[:800], z[800:], labels[800:], seed=0)
    assert scores["knn_accuracy"] > least  # chance: 0.1; a bank of 800 official images


@pytest.mark.parametrize("path", ENCODERS, ids=lambda path: path.stem)
def test_the_evaluate_command_scores_each_encoder(path, tmp_path, capsys):
    # shades of red and of blue, 25 of each in the bank: more than k=20 of each
    for name, colour in (("red", (200, 30, 30)), ("blue", (20, 40, 200))):
        for split, count in (("train", 25), ("test", 3)):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(count):
                shade = tuple(c + 2 * i for c in colour)
                Image.new("RGB", (32, 32), shade).save(
                    tmp_path / "images" / split / name / f"{i}.png")
    assert main(["evaluate", str(path), "--dataset", f"folder:{tmp_path / 'images'}"]) == 0
    knn = re.search(r"kNN accuracy ([\d.]+)", capsys.readouterr().out)
    assert knn and float(knn.group(1)) == 1.0
