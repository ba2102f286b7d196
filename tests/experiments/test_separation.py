"""The separator experiment end to end: its training step, its results and best weights."""

import json

import pytest
import torch

import latentlab
from latentlab.cli import main
from latentlab.config import Config
from latentlab.data import load_dataset
from latentlab.data.mixtures import MixturePairs
from latentlab.experiments import separation, shared
from latentlab.metrics.separation import score_mixtures
from latentlab.training.best import BestWeights

from references import separation_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_unknown_separator_is_refused_before_the_dataset_loads(tmp_path, capsys):
    code = main(["train", "separator", "--model", "unet2", "--dataset",
                 f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path)])
    assert code == 2
    assert "--model must be one of two-decoder-ae" in capsys.readouterr().err


@pytest.mark.parametrize("option, resolved", [("none", "none"), ("auto", "flips")])
def test_training_step_mixes_the_sources_it_scores(option, resolved, monkeypatch):
    """With flips, each source of a pair is mirrored on its own and the mixture the network
    sees is made again from the two: it stays the exact average of what the loss compares."""
    torch.manual_seed(0)
    config = Config(experiment="separator", width=4, augmentation=option).validate()
    model = separation.build(config, (3, 8, 8))
    sources = torch.randint(0, 256, (64, 2, 3, 8, 8), dtype=torch.uint8)
    given = sources.float().sum(1) / 510
    seen = []

    def oracle_difference(m):  # records the mixture and answers d = 0
        seen.append(m)
        return torch.zeros_like(m), torch.zeros(len(m))
    monkeypatch.setattr(model, "difference", oracle_difference)
    augmentation = shared.augmentation_name(config, (3, 8, 8))
    assert augmentation == resolved
    train = MixturePairs(sources.flatten(0, 1), torch.arange(128).view(64, 2))
    views = separation.training_views(config, augmentation)
    step = separation.make_train_step(config, None, views=views, train=train)
    logs = step(model, given, torch.arange(64))
    m = seen[0].float()
    s1, s2 = sources.float().unbind(1)
    combos = torch.stack([(a + b) / 510 for a in (s1, s1.flip(-1)) for b in (s2, s2.flip(-1))])
    match = (combos - m).abs().flatten(2).amax(2) < 1e-6  # (4 combinations, 64)
    assert match.any(0).all()  # every mixture is the average of its (mirrored) sources
    mixed_flips = match[1] | match[2]  # exactly one of the two sources mirrored
    if augmentation == "none":
        assert match[0].all()
    else:
        assert mixed_flips.sum() > 8 and match[0].sum() > 4
    # the loss scores the outputs against those same sources: d = 0 gives the PIT MSE of m
    x1, x2 = (s / 255 for s in (s1, s2))
    expected = torch.stack([((m - a).pow(2) + (m - b).pow(2)).mean((1, 2, 3)) / 2
                            for a in (x1, x1.flip(-1)) for b in (x2, x2.flip(-1))])
    which = match.float().argmax(0)
    assert torch.allclose(logs["mse"], expected.gather(0, which[None])[0].mean(), rtol=1e-4)


def test_crop_trains_on_windows_of_each_source_then_on_whole_mixtures(monkeypatch):
    """With --crop, each source loses its own random window and the mixture is made again
    from the two windows; after --crop-until the network sees whole mixtures."""
    config = Config(experiment="separator", width=4, augmentation="none", crop=8,
                    crop_until=0.5).validate()
    model = separation.build(config, (3, 16, 16))
    sources = torch.randint(0, 256, (6, 2, 3, 16, 16), dtype=torch.uint8)
    seen = []

    def zero_difference(m):
        seen.append(m)
        return torch.zeros_like(m), torch.zeros(len(m))
    monkeypatch.setattr(model, "difference", zero_difference)
    train = MixturePairs(sources.flatten(0, 1), torch.arange(12).view(6, 2))
    views = separation.training_views(config, "none")
    step = separation.make_train_step(config, None, views=views, train=train)
    views.at(0.4)
    logs = step(model, sources.float().sum(1) / 510, torch.arange(6))
    assert seen[-1].shape == (6, 3, 8, 8)
    # each 8x8 mixture is the average of a window of the first source and one of the second
    first, second = (sources[:, i].float().unfold(2, 8, 1).unfold(3, 8, 1) for i in (0, 1))
    pixels = seen[-1].float() * 255  # (6, 3, 8, 8) against windows (6, 3, 9, 9, 8, 8)
    windows_1 = first.permute(0, 2, 3, 1, 4, 5).flatten(1, 2)  # (6, 81, 3, 8, 8)
    windows_2 = second.permute(0, 2, 3, 1, 4, 5).flatten(1, 2)
    averages = (windows_1[:, :, None] + windows_2[:, None]) / 2  # (6, 81, 81, 3, 8, 8)
    error = (averages - pixels[:, None, None]).abs().flatten(3).amax(3).flatten(1).amin(1)
    assert (error < 1e-3).all()
    assert logs["mse"] > 0
    views.at(0.5)
    step(model, sources.float().sum(1) / 510, torch.arange(6))
    assert seen[-1].shape == (6, 3, 16, 16)
    assert views.settles_at == 0.5


def test_crop_is_refused_for_a_separator_that_resizes(tmp_path, capsys):
    code = main(["train", "separator", "--model", "two-decoder-ae", "--crop", "16",
                 "--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path)])
    assert code == 2
    assert "--crop needs --model unet or resunet" in capsys.readouterr().err
    code = main(["train", "separator", "--dataset", "digits", "--crop", "16",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "--crop 16 is larger than the 8x8 images" in capsys.readouterr().err


@pytest.mark.slow
def test_separator_run_writes_its_results(trained_unet):
    run = trained_unet / "unet"
    for name in ("metrics.json", "separation_loss.png", "separation_examples.png",
                 "separator_model.pth", "config.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_mixtures"] == 80 * 79 // 2
    for key in ("test_mse", "test_psnr", "test_ssim", "baseline_average_psnr"):
        assert isinstance(metrics[key], float)
    # nested tiles: each smaller tile may swap wherever a larger one could, and more
    swaps = metrics["test_psnr_if_tiles_could_swap"]
    assert list(swaps) == ["16", "8", "4"]
    assert metrics["test_psnr"] - 1e-3 <= swaps["16"] <= swaps["8"] + 1e-3 <= swaps["4"] + 2e-3
    # by class pair: every mixture counted once, and the count-weighted means give back the
    # overall scores (up to the 3 decimals they are written with)
    table = metrics["test_psnr_by_class_pair"]
    assert table["classes"] == [str(digit) for digit in range(10)]
    counts = torch.tensor(table["mixtures"])
    assert torch.equal(counts, counts.T) and int(counts.tril().sum()) == metrics["test_mixtures"]
    lower = counts.tril().bool()
    for key, overall in (("psnr", metrics["test_psnr"]), ("gain_over_mixture",
                         metrics["test_psnr"] - metrics["baseline_average_psnr"])):
        means = torch.tensor([[v if v is not None else 0.0 for v in row] for row in table[key]])
        assert float((means * counts)[lower].sum()) / metrics["test_mixtures"] == pytest.approx(
            overall, abs=2e-3), key
    assert (run / "separation_class_pairs.png").is_file()
    comparison = json.loads((trained_unet / "comparison.json").read_text())
    assert [row["model"] for row in comparison] == ["unet"]
    assert comparison[0]["baseline_average_ssim"] == metrics["baseline_average_ssim"]
    assert (trained_unet / "separation_comparison.png").is_file()
    # the kept weights are those of the epoch with the best validation PSNR
    history = json.loads((run / "history.json").read_text())
    best = max(range(len(history)), key=lambda i: history[i]["val_psnr"])
    assert metrics["best_epoch"] == best + 1
    assert metrics["best_val_psnr"] == pytest.approx(history[best]["val_psnr"], abs=1e-3)
    assert not any(key.startswith("test_") for key in history[0])


def test_best_weights_follow_validation_where_test_disagrees(tmp_path):
    config = Config(experiment="separator", width=4, out=str(tmp_path))
    model = separation.build(config, (1, 8, 8))
    best = BestWeights(model, config, tmp_path / "best.pth", resume=False)
    weight = next(model.parameters())
    for epoch, (val, test) in enumerate([(10.0, 30.0), (12.0, 5.0), (11.0, 40.0)], 1):
        with torch.no_grad():
            weight.fill_(epoch)
        best(epoch, {"val_psnr": val, "test_psnr": test})
    assert (best.epoch, best.score) == (2, 12.0)
    best.restore()
    assert bool((weight == 2).all())


def test_best_weights_keep_the_lowest_score_where_lower_is_better(tmp_path):
    config = Config(experiment="separator", width=4, out=str(tmp_path))
    model = separation.build(config, (1, 8, 8))
    best = BestWeights(model, config, tmp_path / "best.pth", resume=False,
                       key="val_bits_per_dim", lower_is_better=True)
    for epoch, bits in enumerate([4.5, 4.1, 4.3], 1):
        best(epoch, {"val_bits_per_dim": bits})
    assert (best.epoch, best.score) == (2, 4.1)
    resumed = BestWeights(model, config, tmp_path / "best.pth", resume=True,
                          key="val_bits_per_dim", lower_is_better=True)
    assert not resumed(3, {"val_bits_per_dim": 4.2}) and resumed.epoch == 2


@pytest.mark.slow
def test_unet_trained_briefly_on_digits_beats_returning_the_mixture(trained_unet):
    metrics = json.loads((trained_unet / "unet" / "metrics.json").read_text())
    assert metrics["test_psnr"] > metrics["baseline_average_psnr"] + 0.5
    assert metrics["test_ssim"] > metrics["baseline_average_ssim"]


@pytest.mark.slow
def test_a_finished_run_trains_further_from_its_weights(trained_unet, tmp_path):
    earlier = json.loads((trained_unet / "unet" / "metrics.json").read_text())
    arguments = ["train", "separator", "--dataset", "digits", "--epochs", "1",
                 "--learning-rate", "1e-4", "--test-limit", "80"]
    assert main([*arguments, "--out", str(tmp_path / "fresh")]) == 0
    assert main([*arguments, "--out", str(tmp_path / "continued"), "--init-from",
                 str(trained_unet / "unet" / "separator_model.pth")]) == 0
    fresh, continued = (json.loads((tmp_path / name / "separation" / "unet" / "metrics.json")
                                   .read_text()) for name in ("fresh", "continued"))
    assert continued["initialised_from"]["test_psnr"] == earlier["test_psnr"]
    assert continued["initialised_from"]["train_seconds"] == earlier["train_seconds"]
    assert continued["test_psnr"] > fresh["test_psnr"] + 0.5


@pytest.mark.slow
def test_evaluate_reproduces_the_score_the_run_recorded(trained_unet, tmp_path, capsys):
    path = trained_unet / "unet" / "separator_model.pth"
    code = main(["evaluate", str(path), "--dataset", "digits", "--test-limit", "80",
                 "--out", str(tmp_path / "scores.json")])
    assert code == 0
    recorded = json.loads((trained_unet / "unet" / "metrics.json").read_text())
    result = json.loads((tmp_path / "scores.json").read_text())
    # the scores written out: the 80 test images make 80 x 79 / 2 = 3,160 pairs, all of them
    # scored; PSNR and SSIM under the better matching of outputs to sources, and for the
    # baseline both outputs the mixture itself
    images = load_dataset("digits").limit(None, 80, seed=0).test_images.float() / 255
    first_image, second_image = torch.triu_indices(80, 80, 1)
    x1, x2 = images[first_image], images[second_image]
    m = (x1 + x2) / 2
    model = latentlab.load(path).eval()
    with torch.no_grad():
        separated = separation_reference(*model.separate(m), x1, x2)
    baseline = separation_reference(m, m, x1, x2)
    expected = {"test_mixtures": 3160, "test_psnr": float(separated["psnr"].mean()),
                "test_ssim": float(separated["ssim"].mean()),
                "baseline_average_psnr": float(baseline["psnr"].mean()),
                "baseline_average_ssim": float(baseline["ssim"].mean())}
    for scores in (result, recorded):  # evaluate's, and those the run wrote
        for key, value in expected.items():
            assert scores[key] == pytest.approx(value, abs=1e-4), key
    assert result["separation_seconds"] > 0
    assert (result["test_psnr_by_class_pair"]["mixtures"]
            == recorded["test_psnr_by_class_pair"]["mixtures"])
    assert "real pixels: PSNR" in capsys.readouterr().out


@pytest.mark.slow
def test_loaded_separator_reproduces_the_mixture(trained_unet):
    model = latentlab.load(trained_unet / "unet" / "separator_model.pth")
    m = torch.rand(5, 1, 8, 8)
    first, second = model.separate(m)
    assert torch.allclose((first + second) / 2, m, atol=1e-6)


def test_validation_psnr_is_the_test_psnr_of_the_same_outputs():
    """One definition: the mean over mixtures of both outputs' PSNR, for the epoch's choice
    and the test figure alike (not the PSNR of the two outputs' pooled error)."""
    config = Config(experiment="separator", width=4).validate()
    model = separation.build(config, (3, 8, 8)).eval()
    sources = torch.randint(0, 256, (6, 2, 3, 8, 8), dtype=torch.uint8)
    pairs = MixturePairs(sources.flatten(0, 1), torch.arange(12).view(6, 2))
    m = pairs.mixtures(slice(None))
    x1, x2 = separation.as_sources(sources)
    # d off by a different amount per mixture, so pooled and per-image errors disagree
    error = torch.linspace(0.01, 0.2, 6)[:, None, None, None]
    model.difference = lambda m: ((x1 - x2) / 2 + error, torch.zeros(len(m)))
    logs = separation.make_eval_step(config, variational=False)(model, m, sources)
    first, second = model.project(m, (x1 - x2) / 2 + error)
    by_hand = torch.stack([10 * torch.log10(1 / (out - x).pow(2).flatten(1).mean(1))
                           for out, x in ((first, x1), (second, x2))]).mean()
    assert float(logs["psnr"]) == pytest.approx(float(by_hand), abs=1e-4)
    assert float(logs["psnr"]) == pytest.approx(score_mixtures(model, pairs)["test_psnr"],
                                                abs=1e-4)
