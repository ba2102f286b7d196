"""The contrastive experiments and `latentlab run`, end to end on scikit-learn's digits."""

import json

import numpy as np
import pytest
import torch

import latentlab
from latentlab.cli import main
from latentlab.config import Config, from_dict
from latentlab.data.pairs import balanced_pairs
from latentlab.data.splits import training_data
from latentlab.experiments import contrastive
from latentlab.experiments.contrastive import COLOUR_ENCODERS, build, whitening_sample
from latentlab.experiments.shared import augmentation_name
from latentlab.losses import supcon_loss
from latentlab.metrics.embeddings import embed_all, knn_accuracy, subsample
from latentlab.models import (
    CONTRASTIVE_MODELS,
    AirbenchEncoder,
    ConvContrastive,
    MLPContrastive,
    ResNetContrastive,
)

QUICK = ["--dataset", "digits", "--train-limit", "200", "--test-limit", "100",
         "--tsne-points", "40", "--batch-size", "64"]
FOUNDATION_KEYS = {"knn_accuracy", "linear_probe_accuracy", "silhouette",
                   "mean_within_class_distance", "mean_between_class_distance",
                   "between_within_ratio", "dataset", "epochs", "train_seconds"}
PAIR_KEYS = {"positive_pair_mean_distance", "negative_pair_mean_distance", "pair_auc"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["contrastive", "supcon", "simclr"])
def test_train_writes_results_and_a_loadable_model(method, tmp_path):
    assert main(["train", method, *QUICK, "--epochs", "2", "--out", str(tmp_path)]) == 0
    run_dir = tmp_path / method
    for name in ("loss", "embeddings", "distances"):
        assert (run_dir / f"{method}_{name}.png").stat().st_size > 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert FOUNDATION_KEYS | PAIR_KEYS <= set(metrics)
    assert metrics["epochs"] == 2
    # the pair scores by hand, from the test embeddings the run saved: the distances of its
    # seeded balanced pairs, and the AUC as the share of (positive, negative) pairs in which
    # the positive pair is the closer (ties count half)
    saved = np.load(run_dir / "test_embeddings.npz")
    embeddings = torch.from_numpy(saved["embeddings"]).double()
    first, second, is_positive = balanced_pairs(torch.from_numpy(saved["labels"]), 10000,
                                                torch.Generator().manual_seed(0))
    distance = (embeddings[first] - embeddings[second]).norm(dim=1)
    positive, negative = distance[is_positive], distance[~is_positive]
    closer = (positive[:, None] < negative[None, :]).sum().item()
    ties = (positive[:, None] == negative[None, :]).sum().item()
    assert metrics["pair_auc"] == pytest.approx(
        (closer + ties / 2) / (len(positive) * len(negative)), abs=1e-4)
    assert metrics["positive_pair_mean_distance"] == pytest.approx(float(positive.mean()),
                                                                   rel=1e-5)
    assert metrics["negative_pair_mean_distance"] == pytest.approx(float(negative.mean()),
                                                                   rel=1e-5)
    model = latentlab.load(run_dir / f"{method}_model.pth")
    z = model.embed(torch.rand(5, 3, 16, 16))  # any size and channel count
    assert z.shape == (5, 32) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)


def test_build_picks_encoder_width_head_and_augmentation():
    config = Config(experiment="supcon", encoder="resnet", width=4, latent_dim=8)
    model = build(config, (1, 28, 28))
    assert isinstance(model, ResNetContrastive) and model.hparams()["width"] == 4
    assert model.head is not None  # SupCon/SimCLR project; the margin loss does not
    assert build(Config(experiment="contrastive"), (1, 8, 8)).head is None
    # --encoder auto: the network validation chose for colour images, the MLP for grey ones
    for method in ("contrastive", "supcon", "simclr"):
        auto = build(Config(experiment=method, latent_dim=8), (3, 32, 32))
        assert type(auto) is CONTRASTIVE_MODELS[COLOUR_ENCODERS[method]], method
        assert type(auto) is not ConvContrastive, method
        assert isinstance(build(Config(experiment=method), (1, 8, 8)), MLPContrastive)
    supcon = build(Config(experiment="supcon", latent_dim=8), (3, 32, 32))
    assert supcon.hparams()["width"] == 32  # the shape that won, not airbench's 64
    asked = Config(experiment="supcon", encoder="conv", latent_dim=8)
    assert isinstance(build(asked, (3, 32, 32)), ConvContrastive)
    assert augmentation_name(Config(experiment="simclr"), (1, 8, 8)) == "simclr"
    assert augmentation_name(Config(experiment="supcon"), (3, 32, 32)) == "light"
    assert augmentation_name(Config(experiment="contrastive"), (1, 8, 8)) == "none"
    assert augmentation_name(Config(experiment="separator"), (1, 8, 8)) == "flips"
    separator_on_1000_images = Config(experiment="separator", protocol="assignment")
    assert augmentation_name(separator_on_1000_images, (3, 32, 32)) == "shifts"


def test_bad_options_are_user_errors(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(["train", "simclr", *QUICK, "--augmentation", "strong", *out]) == 2
    assert main(["train", "contrastive", *QUICK, "--width", "-1", *out]) == 2
    assert "--width" in capsys.readouterr().err


@pytest.mark.slow
def test_run_quick_compares_and_contrastive_beats_the_autoencoder(tmp_path, capsys):
    # the acceptance run (`latentlab run --quick --dataset digits`) on the full digits data;
    # batch 64 gives the 3 quick epochs enough steps for a clear margin
    args = ["run", "--quick", "--dataset", "digits", "--batch-size", "64", "--tsne-points", "100",
            "--out", str(tmp_path)]
    assert main(args) == 0
    for name in ("embedding_comparison.png", "distance_comparison.png", "comparison.json",
                 "autoencoder/autoencoder_embeddings.png", "contrastive/contrastive_distances.png",
                 "contrastive/contrastive_model.pth", "autoencoder/autoencoder_model.pth"):
        assert (tmp_path / name).stat().st_size > 0, name
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    autoencoder = comparison["models"]["autoencoder"]
    contrastive = comparison["models"]["contrastive"]
    assert autoencoder["epochs"] == contrastive["epochs"] == 3
    assert contrastive["knn_accuracy"] > autoencoder["knn_accuracy"]
    assert contrastive["pair_auc"] > autoencoder["pair_auc"]
    table = capsys.readouterr().out
    assert "knn_accuracy" in table and "autoencoder" in table and "contrastive" in table


def test_one_view_supcon_embeds_each_image_once_and_simclr_refuses_it(tmp_path, capsys):
    from latentlab.experiments.contrastive import make_step

    seen = []

    def augment(images):
        seen.append(len(images))
        return images

    config = Config(experiment="supcon", encoder="resnet", width=4, latent_dim=8, views=1,
                    temperature=0.5)
    model = build(config, (3, 16, 16))
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2])
    loss = make_step(config, augment)(model, images, labels)["loss"]
    assert seen == [6]  # one view: six images, not twelve
    # the SupCon loss of those six projections as one view each, with their labels and the
    # configured temperature
    expected = supcon_loss(model.project(images).view(6, 1, -1), labels, temperature=0.5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for experiment, views in (("supcon", 2), ("supcon", 0), ("simclr", 0)):
        make_step(Config(experiment=experiment, encoder="resnet", width=4, latent_dim=8,
                         views=views), augment)(model, images, labels)
    assert seen == [6, 12, 6, 12]  # by default SupCon sees one view and SimCLR two
    out = ["--out", str(tmp_path)]
    assert main(["train", "simclr", *QUICK, "--views", "1", *out]) == 2
    assert "--views 1 needs labels" in capsys.readouterr().err


def test_crop_until_trains_on_windows_early_and_whole_images_after(tmp_path, capsys):
    from latentlab.experiments.contrastive import training_views

    config = Config(experiment="supcon", encoder="resnet", crop=10, crop_until=0.5)
    views = training_views(config, "flips", (3, 16, 16))
    views.at(0.49)
    assert views(torch.rand(6, 3, 16, 16)).shape == (6, 3, 10, 10)
    views.at(0.5)
    assert views(torch.rand(6, 3, 16, 16)).shape == (6, 3, 16, 16)
    assert views.settles_at == 0.5  # the loop's time budget waits for the switch
    config = Config(experiment="supcon", encoder="resnet", crop=10)
    assert training_views(config, "flips", (3, 16, 16)).settles_at == 0.0  # one pace throughout
    assert main(["train", "supcon", *QUICK, "--crop-until", "0.5", "--out", str(tmp_path)]) == 2
    assert "--crop-until needs --crop" in capsys.readouterr().err


def test_crop_trains_on_windows_and_refuses_what_cannot_work(tmp_path, capsys, monkeypatch):
    from latentlab.experiments.contrastive import make_step, training_views

    config = Config(experiment="supcon", encoder="resnet", width=4, latent_dim=8, crop=10)
    views = training_views(config, "flips", (3, 16, 16))
    assert views(torch.rand(6, 3, 16, 16)).shape == (6, 3, 10, 10)
    # SimCLR's views: its random resized crop, made at the window's size
    simclr = training_views(config, "simclr", (3, 16, 16))(torch.rand(6, 3, 16, 16))
    assert simclr.shape == (6, 3, 10, 10)
    model = build(config, (3, 16, 16))
    windows, project = [], model.project

    def recording(x):
        windows.append(x)
        return project(x)
    monkeypatch.setattr(model, "project", recording)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = make_step(config, views)(model, torch.rand(6, 3, 16, 16), labels)["loss"]
    # the network saw one 10x10 window of each image, and the loss is SupCon's over them
    assert [tuple(w.shape) for w in windows] == [(6, 3, 10, 10)]
    expected = supcon_loss(project(windows[0]).view(6, 1, -1), labels, config.temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out = ["--out", str(tmp_path)]
    assert main(["train", "supcon", *QUICK, "--encoder", "resnet", "--crop", "9", *out]) == 2
    assert "larger than the 8x8 images" in capsys.readouterr().err
    assert main(["train", "supcon", *QUICK, "--encoder", "conv", "--crop", "8", *out]) == 2
    assert "--crop needs --encoder resnet" in capsys.readouterr().err
    assert main(["train", "supcon", *QUICK, "--crop", "4", *out]) == 2
    assert "--crop must be 0" in capsys.readouterr().err


def test_encoders_trained_on_mirrored_images_embed_with_test_time_flips():
    flipped = build(Config(experiment="supcon", encoder="resnet", width=4, latent_dim=8),
                    (3, 16, 16))
    plain = build(Config(experiment="contrastive"), (1, 8, 8))  # grey: no augmentation
    assert flipped.mirror and not plain.mirror
    flipped.eval()
    images = torch.rand(3, 3, 16, 16)
    z = flipped.embed(images)
    assert torch.allclose(z, flipped.embed(images.flip(-1)), atol=1e-5)  # mirror-invariant
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    flipped.mirror = False  # the average of the plain embeddings of an image and its mirror
    plain_sum = flipped.embed(images) + flipped.embed(images.flip(-1))
    assert torch.allclose(z, torch.nn.functional.normalize(plain_sum, dim=1), atol=1e-5)


@pytest.mark.slow
def test_airbench_supcon_whitens_from_training_images_and_keeps_the_fit(tmp_path):
    assert main(["train", "supcon", *QUICK, "--encoder", "airbench", "--width", "4",
                 "--epochs", "3", "--out", str(tmp_path)]) == 0
    run_dir = tmp_path / "supcon"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    assert metrics["epochs"] == len(history) == 3
    model = latentlab.load(run_dir / "supcon_model.pth")
    data = training_data(from_dict(model.config))
    fitted = AirbenchEncoder(1, width=4)
    sample = whitening_sample(data.train_images, from_dict(model.config).seed)
    fitted.fit_whitening(model.prepare(sample, model.input_size()))
    # the whitening weights are those fitted before training, untouched by it
    assert torch.allclose(model.backbone[0].whiten.weight, fitted.whiten.weight, atol=1e-4)


def test_whitening_sample_draws_from_every_class_of_a_class_sorted_dataset():
    index = torch.arange(12000)
    picked = whitening_sample(index, seed=0)
    assert len(picked) == len(picked.unique()) == 5000  # each image at most once
    labels = index // 1200  # a folder's order: class by class
    assert labels[picked].bincount(minlength=10).min() > 400  # about 500 each, not 2 classes
    assert torch.equal(whitening_sample(index[:30], seed=0).sort().values, index[:30])


def test_kept_weights_are_the_epoch_with_the_best_validation_knn(tmp_path):
    assert main(["train", "supcon", *QUICK, "--epochs", "4", "--precision", "fp32",
                 "--out", str(tmp_path)]) == 0
    run = tmp_path / "supcon"
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    scores = [record["val_knn"] for record in history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first of ties
    assert metrics["best_epoch"] == best + 1 and metrics["best_val_knn"] == scores[best]
    # recomputed from the shipped weights: the same seeded bank, the validation split
    config = from_dict(json.loads((run / "config.json").read_text())["config"])
    data = training_data(config)
    images, labels = data.bank()
    pick = subsample(len(labels), contrastive.KNN_BANK, config.seed)
    model = latentlab.load(run / "supcon_model.pth")
    model.mirror = False
    bank, val = embed_all(model, images[pick]), embed_all(model, data.val_images)
    assert knn_accuracy(bank, labels[pick], val, data.val_labels) == pytest.approx(
        scores[best], abs=1e-9)
