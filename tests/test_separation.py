"""Mixture data, separators, the separator experiment and `latentlab separate`."""

import json
import re
import runpy
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

import latentlab
from latentlab.checkpoint import model_record, save_atomic
from latentlab.cli import main
from latentlab.config import Config
from latentlab.errors import UserError
from latentlab.experiments import separation, shared
from latentlab.losses import permutation_invariant_mse
from latentlab.mixtures import (
    MixturePairs,
    distinct_pairs,
    fixed_test_mixtures,
    random_partners,
    training_mixtures,
)
from latentlab.models import SEPARATORS, MLPAutoencoder
from latentlab.plots import wrap_name
from latentlab.report import describe_class_pairs
from latentlab.separate import output_stems, read_image

pytestmark = pytest.mark.usefixtures("one_thread")


def unordered(pairs: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs.tolist()}


# ----------------------------------------------------------------------------- data

def test_test_mixtures_are_identical_across_runs_and_never_pair_an_image_with_itself():
    images = torch.randint(0, 256, (400, 1, 2, 2), dtype=torch.uint8)
    first, second = fixed_test_mixtures(images), fixed_test_mixtures(images)
    assert len(first) == 10_000
    assert torch.equal(first.pairs, second.pairs)
    assert bool((first.pairs[:, 0] != first.pairs[:, 1]).all())
    assert len(unordered(first.pairs)) == 10_000  # no pair repeated
    assert not torch.equal(distinct_pairs(400, 100, seed=1), distinct_pairs(400, 100, seed=2))


def test_small_splits_get_every_distinct_pair_once():
    pairs = distinct_pairs(5, 10_000, seed=0)
    assert len(pairs) == 10
    assert unordered(pairs) == {(a, b) for a in range(5) for b in range(a + 1, 5)}


def test_mixtures_are_exact_averages_built_from_shared_images():
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    pairs = MixturePairs(images, torch.tensor([[0, 1], [5, 2]]))
    assert pairs.images.data_ptr() == images.data_ptr()  # no copies
    expected = (images[[0, 5]].double() + images[[1, 2]].double()) / 510
    assert torch.allclose(pairs.mixtures(torch.arange(2)).double(), expected, atol=1e-7)
    assert torch.equal(pairs.sources(slice(1, 2))[0], images[[5, 2]])
    view = pairs.mixture_view()
    assert len(view) == 2 and torch.equal(view[slice(0, 2)], pairs.mixtures(slice(0, 2)))


def test_moved_mixtures_gather_batches_on_their_device_without_a_host_round_trip():
    # "meta" tensors have no data: a copy of the order or the pair table to the host and
    # back (a GPU stall every training step) would raise here
    pairs = MixturePairs(torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)).to("meta")
    pairs.resample(1)
    assert pairs.images.is_meta and pairs.pairs.is_meta
    order = torch.arange(10, device="meta")
    assert pairs.mixtures(order[:4]).is_meta and pairs.mixtures(order[:4]).shape == (4, 3, 4, 4)
    assert pairs.sources(slice(0, 2)).shape == (2, 2, 3, 4, 4)


def test_protocols():
    images = torch.randint(0, 256, (1_200, 1, 2, 2), dtype=torch.uint8)
    assignment = training_mixtures(images, "assignment", seed=0)
    assert len(assignment.images) == 1_000 and len(assignment) == 45_000
    assert len(unordered(assignment.pairs)) == 45_000
    assert bool((assignment.pairs[:, 0] != assignment.pairs[:, 1]).all())
    full = training_mixtures(images, "full", seed=0)
    assert full.images.data_ptr() == images.data_ptr() and len(full) == 1_200
    full.resample(1)
    epoch_1 = full.pairs.clone()
    full.resample(2)
    assert not torch.equal(epoch_1, full.pairs)  # fresh pairs every epoch
    full.resample(1)
    assert torch.equal(epoch_1, full.pairs)  # ... reproducibly, for exact resumption
    assert sorted(full.pairs[:, 0].tolist()) == list(range(1_200))
    assert bool((full.pairs[:, 0] != full.pairs[:, 1]).all())
    assert bool((random_partners(2, 0)[:, 0] != random_partners(2, 0)[:, 1]).all())


def test_mixtures_carry_the_classes_of_both_images_under_either_protocol():
    # each image holds its own label as its one pixel value, so a pair shows its classes
    labels = torch.arange(1_200) % 10
    images = labels.to(torch.uint8).view(-1, 1, 1, 1)
    for protocol in ("assignment", "full"):
        train = training_mixtures(images, protocol, seed=0, labels=labels)
        index = torch.arange(0, len(train), 7)
        sources = train.sources(index).view(len(index), 2).long()
        assert torch.equal(train.classes(index), sources), protocol
    with pytest.raises(ValueError, match="without the images' labels"):
        training_mixtures(images, "full", seed=0).classes(slice(0, 2))


def test_class_head_learns_the_classes_of_the_two_images_and_leaves_the_rest_as_it_was():
    config = Config(experiment="separator", width=4, augmentation="none").validate()
    plain = separation.build(config, (3, 8, 8), n_classes=10)
    headed = separation.build(replace(config, class_weight=1.0), (3, 8, 8), n_classes=10)
    assert plain.class_head is None and headed.class_head is not None
    assert headed.hparams()["class_head"] == 10 and "class_head" not in plain.hparams()
    for name, weight in plain.state_dict().items():  # the same start but for the head
        assert torch.equal(weight, headed.state_dict()[name]), name
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    train = MixturePairs(images, torch.arange(64).view(32, 2), labels=labels)
    step = separation.make_train_step(replace(config, class_weight=1.0), 1, False, "none", train)
    index = torch.arange(32)
    logs = step(headed, train.mixtures(index), index)
    present = torch.zeros(32, 10).scatter_(1, labels.view(32, 2), 1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(headed.logits.float(), present)
    assert float(logs["class_bce"]) == pytest.approx(float(bce.detach()), rel=1e-5)
    assert float(logs["loss"].detach()) == pytest.approx(-float(logs["psnr"]) + float(bce.detach()),
                                                        rel=1e-4)
    logs["loss"].backward()
    assert headed.class_head.weight.grad.abs().sum() > 0
    assert "class_bce" not in separation.make_train_step(config, 1, False, "none", train)(
        plain, train.mixtures(index), index)


@pytest.mark.parametrize("options, message", [
    ({"class_weight": -1.0}, "--class-weight must be 0 or more"),
    ({"class_weight": 1.0, "model": "resunet"}, "--class-weight is for --model unet"),
])
def test_class_weight_is_checked(options, message):
    with pytest.raises(UserError, match=message):
        Config(experiment="separator", **options).validate()


def test_class_weight_needs_labelled_classes():
    config = Config(experiment="separator", class_weight=1.0).validate()
    with pytest.raises(UserError, match="needs a dataset of two or more classes"):
        separation.build(config, (3, 8, 8), n_classes=1)


def test_an_unknown_separator_is_refused_before_the_dataset_loads(tmp_path, capsys):
    code = main(["train", "separator", "--model", "unet2", "--dataset",
                 f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path)])
    assert code == 2
    assert "--model must be one of two-decoder-ae" in capsys.readouterr().err


def test_one_image_cannot_make_a_mixture():
    with pytest.raises(latentlab.UserError, match="at least 2 images"):
        distinct_pairs(1, 10, seed=0)


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("name", list(SEPARATORS))
def test_separators_reproduce_the_mixture_and_train(name):
    torch.manual_seed(0)
    model = SEPARATORS[name]((3, 32, 32))
    x1, x2 = torch.rand(2, 4, 3, 32, 32)
    m = (x1 + x2) / 2
    first, second = model.separate(m)
    assert first.shape == second.shape == m.shape
    assert torch.allclose((first + second) / 2, m, atol=1e-6)
    assert first.min() >= 0 and first.max() <= 1 and second.min() >= 0 and second.max() <= 1
    model.train()
    d, kl = model(m)
    loss = (m + d - x1).pow(2).mean() + kl.mean()
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


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

    def oracle_split(m):  # records the mixture and answers d = 0
        seen.append(m)
        return torch.zeros_like(m), torch.zeros(len(m))
    monkeypatch.setattr(model, "split", oracle_split)
    augmentation = shared.augmentation_name(config, (3, 8, 8))
    assert augmentation == resolved
    train = MixturePairs(sources.flatten(0, 1), torch.arange(128).view(64, 2))
    step = separation.make_train_step(config, 1, variational=False, augmentation=augmentation,
                                      train=train)
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


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 20, 12)])
def test_separators_accept_any_image_size(shape):
    for cls in SEPARATORS.values():
        model = cls(shape)
        m = torch.rand(2, *shape)
        first, second = model.separate(m)
        assert first.shape == m.shape
        assert torch.allclose((first + second) / 2, m, atol=1e-6)


# ----------------------------------------------------------------------------- experiment + CLI

@pytest.fixture(scope="module")
def trained_unet(tmp_path_factory):
    """A U-Net trained for a few seconds on digits, and its metrics."""
    out = tmp_path_factory.mktemp("results")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "separator", "--model", "unet", "--dataset", "digits",
                     "--epochs", "3", "--batch-size", "64", "--test-limit", "80",
                     "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out / "separation"


@pytest.mark.parametrize("name", ["unet", "resunet", "two-decoder-ae"])
def test_width_option_sets_the_separator_width(name):
    default = separation.build(Config(experiment="separator", model=name), (3, 32, 32))
    narrow = separation.build(Config(experiment="separator", model=name, width=8), (3, 32, 32))
    assert narrow.hparams()["width"] == 8 != default.hparams()["width"]
    assert shared.num_parameters(narrow) < shared.num_parameters(default)


def saved_separator(path, width, seed, **metrics):
    model = separation.build(Config(experiment="separator", width=width, seed=seed), (3, 16, 16))
    save_atomic(model_record(model, {}, metrics=metrics), path)
    return model


def test_init_from_copies_the_weights_of_a_finished_separator(tmp_path):
    earlier = saved_separator(tmp_path / "earlier.pth", 8, seed=1, train_seconds=60.0,
                              test_psnr=20.5, psnr_vs_time=[[60.0, 20.5]], test_ssim=0.7)
    model = separation.build(Config(experiment="separator", width=8, seed=2), (3, 16, 16))
    assert not torch.equal(model.head.weight, earlier.head.weight)
    record = separation.warm_start(model, tmp_path / "earlier.pth")
    for name, value in earlier.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert record == {"path": str(tmp_path / "earlier.pth"), "train_seconds": 60.0,
                      "test_psnr": 20.5, "psnr_vs_time": [[60.0, 20.5]]}


def test_init_from_adds_or_drops_a_class_head(tmp_path):
    earlier = saved_separator(tmp_path / "plain.pth", 8, seed=1)
    config = Config(experiment="separator", width=8, seed=2, class_weight=0.5)
    headed = separation.build(config, (3, 16, 16), n_classes=10)
    fresh_head = headed.class_head.weight.clone()
    separation.warm_start(headed, tmp_path / "plain.pth")
    for name, value in earlier.state_dict().items():
        assert torch.equal(headed.state_dict()[name], value), name
    assert torch.equal(headed.class_head.weight, fresh_head)  # new: keeps its init
    save_atomic(model_record(headed, {}), tmp_path / "headed.pth")
    plain = separation.build(replace(config, class_weight=0.0), (3, 16, 16))
    separation.warm_start(plain, tmp_path / "headed.pth")
    assert torch.equal(plain.head.weight, earlier.head.weight)


def test_init_from_refuses_another_architecture_or_a_missing_file(tmp_path):
    saved_separator(tmp_path / "wide.pth", 16, seed=0)
    narrower = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    with pytest.raises(UserError, match="--width .*may only grow"):
        separation.warm_start(narrower, tmp_path / "wide.pth")
    resunet = separation.build(Config(experiment="separator", model="resunet", width=8),
                               (3, 16, 16))
    save_atomic(model_record(resunet, {}), tmp_path / "resunet.pth")
    wider_resunet = separation.build(Config(experiment="separator", model="resunet", width=16),
                                     (3, 16, 16))
    with pytest.raises(UserError, match="ResUNetSeparator"):  # only a U-Net grows wider
        separation.warm_start(wider_resunet, tmp_path / "resunet.pth")
    autoencoder = MLPAutoencoder((3, 16, 16), latent_dim=4)
    save_atomic(model_record(autoencoder, {}), tmp_path / "autoencoder.pth")
    narrow = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    with pytest.raises(UserError, match="MLPAutoencoder"):
        separation.warm_start(narrow, tmp_path / "autoencoder.pth")
    with pytest.raises(UserError, match="--init-from .* does not exist"):
        Config(experiment="separator", init_from=str(tmp_path / "missing.pth")).validate()


def test_a_trained_unet_grows_bottleneck_blocks_without_changing_its_output(tmp_path):
    earlier = saved_separator(tmp_path / "earlier.pth", 8, seed=1)
    torch.nn.init.normal_(earlier.head.weight)  # a head that is not near zero
    save_atomic(model_record(earlier, {}), tmp_path / "earlier.pth")
    deeper = separation.build(
        Config(experiment="separator", width=8, bottleneck_blocks=2, seed=2), (3, 16, 16))
    assert shared.num_parameters(deeper) > shared.num_parameters(earlier)
    separation.warm_start(deeper, tmp_path / "earlier.pth")
    m = torch.rand(4, 3, 16, 16)
    earlier.eval(), deeper.eval()
    with torch.no_grad():
        assert torch.allclose(deeper(m)[0], earlier(m)[0], atol=1e-5)
    save_atomic(model_record(deeper, {}), tmp_path / "deeper.pth")
    with pytest.raises(UserError, match="may only grow"):
        separation.warm_start(earlier, tmp_path / "deeper.pth")
    with pytest.raises(UserError, match="--model unet"):
        Config(experiment="separator", model="resunet", bottleneck_blocks=1).validate()


def test_a_trained_unet_grows_wider_without_changing_its_output(tmp_path):
    config = Config(experiment="separator", width=8, bottleneck_blocks=1, class_weight=1.0,
                    seed=1)
    earlier = separation.build(config, (3, 16, 16), n_classes=4)
    for layer in (earlier.head, earlier.bottleneck[0].body[-1]):  # not near zero or identity
        torch.nn.init.normal_(layer.weight)
    m = torch.rand(6, 3, 16, 16)
    earlier(m)  # BatchNorm statistics that are not the init's
    save_atomic(model_record(earlier, {}), tmp_path / "earlier.pth")
    wider = separation.build(replace(config, width=12, bottleneck_blocks=2, seed=2),
                             (3, 16, 16), n_classes=4)
    separation.warm_start(wider, tmp_path / "earlier.pth")
    assert shared.num_parameters(wider) > 2 * shared.num_parameters(earlier)
    for model in (earlier, wider):
        model.precision = "fp32"  # compare in float32: bf16 rounding differs by width
    for training in (False, True):  # running statistics, then the batch's own
        earlier.train(training), wider.train(training)
        with torch.no_grad():
            assert torch.allclose(wider(m)[0], earlier(m)[0], atol=1e-5)
            assert torch.allclose(wider.logits, earlier.logits, atol=1e-5)
    # the new channels start unread, but training reaches them: the weights that read them
    # get gradients at once
    first, second = wider.project(m, wider(m)[0])
    permutation_invariant_mse(first, second, torch.rand_like(m), torch.rand_like(m)).backward()
    assert torch.count_nonzero(wider.head.weight[:, 8:]) == 0
    assert wider.head.weight.grad[:, 8:].abs().sum() > 0
    merge = wider.merge[-1][0][0]  # reads cat([up (12 channels), skip (12 channels)])
    assert torch.count_nonzero(merge.weight[:, 8:12]) == 0
    assert torch.count_nonzero(merge.weight[:, 20:]) == 0
    assert torch.equal(merge.weight[:8, 12:20], earlier.merge[-1][0][0].weight[:, 8:])


def test_init_from_twice_records_the_training_since_the_first_run(tmp_path):
    saved_separator(tmp_path / "second.pth", 8, seed=1, train_seconds=50.0, epochs=2,
                    test_psnr=21.0, psnr_vs_time=[[20.0, 20.8], [50.0, 21.0]],
                    initialised_from={"train_seconds": 100.0, "epochs": 3,
                                      "psnr_vs_time": [[100.0, 20.0]]})
    model = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    record = separation.warm_start(model, tmp_path / "second.pth")
    assert record["train_seconds"] == 150.0 and record["epochs"] == 5
    assert record["psnr_vs_time"] == [[100.0, 20.0], [120.0, 20.8], [150.0, 21.0]]


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
    best = separation.BestWeights(model, config, tmp_path / "best.pth", resume=False)
    weight = next(model.parameters())
    for epoch, (val, test) in enumerate([(10.0, 30.0), (12.0, 5.0), (11.0, 40.0)], 1):
        with torch.no_grad():
            weight.fill_(epoch)
        best.update(epoch, {"val_psnr": val, "test_psnr": test})
    assert (best.epoch, best.psnr) == (2, 12.0)
    best.restore()
    assert bool((weight == 2).all())


def test_class_pairs_are_described_by_the_least_and_the_most_gain():
    table = {"classes": ["cat", "dog", "ship"],
             "psnr": [[18.0, 17.5, 20.0], [17.5, 18.5, None], [20.0, None, 19.0]],
             "gain_over_mixture": [[3.0, 2.0, 5.5], [2.0, 3.1, None], [5.5, None, 2.5]]}
    assert describe_class_pairs(table) == (
        "it gains least on cat + dog (+2.00 dB over returning the mixture, 17.50 dB) and most "
        "on cat + ship (+5.50 dB, 20.00 dB)")


def test_long_model_names_break_at_their_last_hyphen():
    assert wrap_name("two-decoder-vae") == "two-decoder-\nvae"
    assert wrap_name("resunet") == "resunet"
    assert wrap_name("unet") == "unet"


def test_unet_trained_briefly_on_digits_beats_returning_the_mixture(trained_unet):
    metrics = json.loads((trained_unet / "unet" / "metrics.json").read_text())
    assert metrics["test_psnr"] > metrics["baseline_average_psnr"] + 0.5
    assert metrics["test_ssim"] > metrics["baseline_average_ssim"]


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


def run_benchmark(*arguments, monkeypatch):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "separation.py"
    monkeypatch.setattr(sys, "argv", [str(script), *map(str, arguments)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(script), run_name="__main__")
    return exit.value.code


def test_evaluate_reproduces_the_score_the_run_recorded(trained_unet, tmp_path, capsys):
    path = trained_unet / "unet" / "separator_model.pth"
    code = main(["evaluate", str(path), "--dataset", "digits", "--test-limit", "80",
                 "--out", str(tmp_path / "scores.json")])
    assert code == 0
    recorded = json.loads((trained_unet / "unet" / "metrics.json").read_text())
    result = json.loads((tmp_path / "scores.json").read_text())
    assert result["test_mixtures"] == recorded["test_mixtures"]
    for key in ("test_psnr", "test_ssim", "baseline_average_psnr"):
        assert result[key] == pytest.approx(recorded[key], abs=1e-4), key
    assert result["separation_seconds"] > 0
    assert (result["test_psnr_by_class_pair"]["mixtures"]
            == recorded["test_psnr_by_class_pair"]["mixtures"])
    assert "real pixels: PSNR" in capsys.readouterr().out


def test_benchmark_reports_a_stopped_run_in_one_line(tmp_path, monkeypatch, capsys):
    from latentlab.training import Interrupted

    def stopped(config):
        raise Interrupted(tmp_path / "checkpoint.pth")

    monkeypatch.setattr(separation, "run", stopped)
    code = run_benchmark("--models", "unet", "--protocols", "full", "--dataset", "digits",
                         "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 130
    assert "interrupted; progress saved in" in capsys.readouterr().err
    assert not (tmp_path / "separation.json").exists()


def test_benchmark_runs_every_seed_and_reports_mean_and_spread(tmp_path, monkeypatch, capsys):
    seen = []

    def finished(config):  # a run's metrics, its PSNR set by its seed
        seen.append((config.seed, config.out))
        return {"model": config.model, "protocol": config.protocol, "num_parameters": 10,
                "train_seconds": 1.0, "epochs": 1, "test_psnr": 17.0 + config.seed,
                "test_ssim": 0.5, "separation_seconds": 0.1, "test_mixtures": 10,
                "baseline_average_psnr": 15.0, "baseline_average_ssim": 0.4,
                "psnr_vs_time": [[1.0, 17.0]], "device": "cpu"}

    monkeypatch.setattr(separation, "run", finished)
    code = run_benchmark("--models", "unet", "--protocols", "full", "--dataset", "digits",
                         "--seed", 1, "--seeds", 3, "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    assert [seed for seed, _ in seen] == [1, 2, 3]
    assert len({out for _, out in seen}) == 3  # each seed writes its own folder
    assert "unet (full), 3 seeds: test PSNR 19.00 ± 1.00 dB" in capsys.readouterr().out
    saved = json.loads((tmp_path / "separation.json").read_text())
    assert saved["seeds"] == 3 and len(saved["runs"]) == 3


def test_benchmark_times_each_width_and_refuses_a_bad_width_list(tmp_path, monkeypatch,
                                                                 capsys):
    code = run_benchmark("--time-widths", "4,16", "--models", "unet", "--dataset", "digits",
                         "--test-limit", 40, "--device", "cpu", "--threads", 1,
                         "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    rows = json.loads((tmp_path / "separation-timing.json").read_text())["rows"]
    assert [(row["model"], row["width"]) for row in rows] == [("unet", 4), ("unet", 16)]
    assert rows[0]["num_parameters"] < rows[1]["num_parameters"]
    assert all(row["separation_seconds"] > 0 and row["test_mixtures"] == 40 * 39 // 2
               for row in rows)
    code = run_benchmark("--time-widths", "64,wide", "--dataset", "digits", "--out",
                         tmp_path / "bad", monkeypatch=monkeypatch)
    assert code == 2
    assert "--time-widths takes widths" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_loaded_separator_reproduces_the_mixture(trained_unet):
    model = latentlab.load(trained_unet / "unet" / "separator_model.pth")
    m = torch.rand(5, 1, 8, 8)
    first, second = model.separate(m)
    assert torch.allclose((first + second) / 2, m, atol=1e-6)


def write_png(path, size, colour):
    Image.new("RGB", size, colour).save(path)
    return str(path)


def test_separate_command_mixes_and_separates(trained_unet, tmp_path, capsys):
    a = write_png(tmp_path / "a.png", (8, 8), (200, 10, 10))
    b = write_png(tmp_path / "b.png", (16, 16), (0, 0, 250))
    model = str(trained_unet / "unet" / "separator_model.pth")
    assert main(["separate", model, "--mix", a, b, "--out", str(tmp_path / "mixed")]) == 0
    out = capsys.readouterr().out
    assert "PSNR against the originals" in out
    # the model works at 8x8: only the 16x16 image is resized, and the user is told so
    assert "b.png (16x16) was resized" in out and "a.png" not in out
    for name in ("mixture.png", "x1_hat.png", "x2_hat.png", "separation.png"):
        assert (tmp_path / "mixed" / name).is_file()
    with Image.open(tmp_path / "mixed" / "separation.png") as figure:
        assert figure.width > 3 * figure.height  # five images side by side
    assert main(["separate", model, a, "--out", str(tmp_path / "blend")]) == 0
    assert "resized" not in capsys.readouterr().out
    with Image.open(tmp_path / "blend" / "x1_hat.png") as image:
        assert image.size == (8, 8)


def test_separate_command_takes_many_blends_and_folders(trained_unet, tmp_path, capsys):
    model_path = str(trained_unet / "unet" / "separator_model.pth")
    folder = tmp_path / "blends"
    folder.mkdir()
    colours = [(200, 10, 10), (0, 0, 250), (30, 160, 30)]
    for i, colour in enumerate(colours):
        write_png(folder / f"blend{i}.png", (8, 8), colour)
    (folder / "notes.txt").write_text("not an image, skipped")
    (folder / "._blend0.png").write_bytes(b"macOS metadata, hidden: skipped")
    other = tmp_path / "other"
    other.mkdir()
    extra = write_png(other / "blend0.png", (12, 12), (90, 90, 90))  # same name as one above
    out = tmp_path / "many"
    assert main(["separate", model_path, str(folder), extra, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "separated 4 blends" in printed and "blend0.png (12x12) was resized" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["separation.png"] + [f"{stem}_x{k}_hat.png" for k in (1, 2)
                            for stem in ("blend0-1", "blend1", "blend2", "blend0-4")])
    # each pair of outputs averages to its own blend (to the 8-bit rounding of the PNGs)
    model = latentlab.load(model_path)
    for i in range(len(colours)):
        stem = "blend0-1" if i == 0 else f"blend{i}"
        x1, x2 = (read_image(str(out / f"{stem}_x{k}_hat.png")).float() / 255 for k in (1, 2))
        blend = model.prepare(read_image(str(folder / f"blend{i}.png")), (8, 8))
        assert x1.shape == blend.shape == (1, 1, 8, 8)
        assert torch.allclose((x1 + x2) / 2, blend, atol=1 / 255)


def test_output_names_stay_distinct():
    assert output_stems(["a/x.png", "b/y.jpg"]) == ["x", "y"]
    assert output_stems(["a/x.png", "b/x.png"]) == ["x-1", "x-2"]
    # a blend already named like a numbered one does not lose its outputs to another's
    assert output_stems(["a/x.png", "b/x.png", "x-2.png"]) == ["x-1", "x-2_", "x-2"]


def test_separate_command_errors(trained_unet, tmp_path, capsys):
    model = str(trained_unet / "unet" / "separator_model.pth")
    image = write_png(tmp_path / "a.png", (8, 8), (1, 2, 3))
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    autoencoder = tmp_path / "autoencoder_model.pth"
    save_atomic(model_record(MLPAutoencoder((1, 8, 8)), {}), autoencoder)
    cases = [
        ([model, str(tmp_path / "missing.png")], "does not exist"),
        ([model, str(broken)], "not a readable image"),
        ([str(autoencoder), image], "not a separator"),
        ([str(trained_unet / "unet" / "checkpoint.pth"), image], "training checkpoint"),
        ([model], "either blended images (or folders of them) or --mix"),
        ([model, image, "--mix", image, image], "not both"),
        ([model, str(empty)], "holds no images"),
    ]
    for args, message in cases:
        assert main(["separate", *args]) == 2
        assert message in capsys.readouterr().err


def test_benchmark_help_keeps_its_commands_on_separate_lines(monkeypatch, capsys):
    assert run_benchmark("--help", monkeypatch=monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    # a continued command ends in a backslash, and its next line is indented under it
    continued = [i for i, line in enumerate(lines) if line.endswith("\\")]
    assert continued
    assert all(lines[i + 1].startswith(" " * 8) for i in continued)
    assert not any(re.search(r"\S {5,}--", line) for line in lines)  # lines run together
