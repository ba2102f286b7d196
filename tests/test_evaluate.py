"""`latentlab evaluate`: any saved model scored on any dataset's test split."""

import json
import math
from pathlib import Path

import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record
from latentlab.cli import main
from latentlab.config import Config
from latentlab.data import load_dataset
from latentlab.data.mixtures import MixturePairs, fixed_test_mixtures
from latentlab.data.splits import training_data
from latentlab.data.twins import read_twin_images, read_twins
from latentlab.evaluate import evaluate_saved
from latentlab.files import save_atomic
from latentlab.metrics.embeddings import linear_probe_accuracy
from latentlab.metrics.images import shortcut_ratio
from latentlab.metrics.separation import score_mixtures, twin_scores
from latentlab.models import MLPAutoencoder

from datafiles import write_official_and_twins
from references import cosine_knn_accuracy, separation_reference

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def twin_folders(tmp_path_factory):
    """The official zip with its twins file and the copy folder beside it, and a U-Net
    trained on each (one epoch): the copy's training split holds every official image's twin."""
    root = tmp_path_factory.mktemp("twins")
    official, copy = write_official_and_twins(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, spec in (("official", official), ("copy", copy)):
            assert main(["train", "separator", "--dataset", spec, "--epochs", "1", "--width", "4",
                         "--batch-size", "8", "--out", str(root / f"run-{name}")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root, official, copy


def model_of(root, name):
    return str(root / f"run-{name}" / "separation" / "unet" / "separator_model.pth")


@pytest.mark.slow
def test_evaluate_reproduces_the_score_a_run_recorded(twin_folders, tmp_path, capsys):
    root, official, _ = twin_folders
    recorded = json.loads((root / "run-official" / "separation" / "unet" / "metrics.json")
                          .read_text())
    out = tmp_path / "scores.json"
    assert main(["evaluate", model_of(root, "official"), "--dataset", official,
                 "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    # the scores written out: every pair of the run's test images, PSNR and SSIM under the
    # better matching of outputs to sources, and for the baseline the mixture itself
    data = load_dataset(official, seed=0)
    images = data.test_images.float() / 255
    first_image, second_image = torch.triu_indices(len(images), len(images), 1)
    x1, x2 = images[first_image], images[second_image]
    m = (x1 + x2) / 2
    with torch.no_grad():
        separated = separation_reference(*latentlab.load(model_of(root, "official")).eval()
                                         .separate(m), x1, x2)
    baseline = separation_reference(m, m, x1, x2)
    psnr, ssim = float(separated["psnr"].mean()), float(separated["ssim"].mean())
    baseline_psnr = float(baseline["psnr"].mean())
    gain = psnr - baseline_psnr
    # the twins file names, for each test image, a twin with the very same pixels
    # (datafiles.write_official_and_twins): the twins score what the images score
    assert torch.equal(read_twin_images(official, data.test_names), data.test_images)
    twins = {"test_psnr": psnr, "test_ssim": ssim, "baseline_average_psnr": baseline_psnr,
             "gain_over_mixture": gain}
    for scores in (row, recorded):  # evaluate's, and those the run wrote
        assert scores["test_mixtures"] == len(x1) == 28  # 8 test images
        assert scores["test_psnr"] == pytest.approx(psnr, abs=1e-4)
        assert scores["test_ssim"] == pytest.approx(ssim, abs=1e-4)
        assert scores["baseline_average_psnr"] == pytest.approx(baseline_psnr, abs=1e-4)
        assert scores["jpeg_twins"] == pytest.approx(twins, abs=1e-4)
        # gain on real pixels / gain on the twins: 1 for twins this alike, where the
        # separator gains at all; where it does not (one epoch of a 4-channel U-Net on 29
        # images loses 1.7 dB to the mixture) there is no gain to share and the ratio is NaN
        if gain > 0:
            assert scores["shortcut_ratio"] == pytest.approx(1.0)
        else:
            assert math.isnan(scores["shortcut_ratio"])
    assert row["seen_in_training"] == 0  # its own run held these images and their twins out
    printed = capsys.readouterr().out
    assert "real pixels: PSNR" in printed and "shortcut ratio" in printed


class LookupSeparator:
    """A stand-in separator with a known answer: for a mixture in its table it returns
    0.75 x + 0.25 m for each source x (a fixed gain over the mixture); for any other mixture,
    the mixture itself (no gain)."""

    kind = "separator"

    def __init__(self, pairs: MixturePairs) -> None:
        sources = pairs.sources(slice(None)).float() / 255
        self.table = {self.key(m): (x1, x2) for m, x1, x2 in zip(
            pairs.mixtures(slice(None)), sources[:, 0], sources[:, 1])}

    @staticmethod
    def key(m: torch.Tensor) -> bytes:
        return (m * 510).round().to(torch.int16).numpy().tobytes()

    def eval(self) -> None:
        pass

    def separate(self, mixtures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [self.table.get(self.key(m), (m, m)) for m in mixtures]
        first = torch.stack([0.75 * x1 + 0.25 * m for (x1, _), m in zip(outputs, mixtures)])
        return first, 2 * mixtures - first  # the two outputs average to the mixture


def known_pairs(shift: int) -> tuple[MixturePairs, torch.Tensor]:
    """Test pairs of 12 random images, and twins: the images shifted by `shift` levels."""
    images = torch.randint(20, 230, (12, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return fixed_test_mixtures(images, 30), images + shift


def test_twins_with_the_same_pixels_give_a_shortcut_ratio_of_one():
    test, twins = known_pairs(shift=0)
    model = LookupSeparator(test)
    real = score_mixtures(model, test)
    scored = twin_scores(model, test, twins, real)
    assert real["test_psnr"] > real["baseline_average_psnr"] + 1
    assert scored["jpeg_twins"]["test_psnr"] == pytest.approx(real["test_psnr"], abs=1e-9)
    assert scored["shortcut_ratio"] == pytest.approx(1.0)


def test_a_separator_that_only_learned_the_twins_has_a_shortcut_ratio_of_zero():
    test, twins = known_pairs(shift=3)
    model = LookupSeparator(MixturePairs(twins, test.pairs))  # knows the twins' mixtures only
    real = score_mixtures(model, test)
    scored = twin_scores(model, test, twins, real)
    assert real["test_psnr"] == pytest.approx(real["baseline_average_psnr"], abs=1e-9)
    assert scored["jpeg_twins"]["gain_over_mixture"] > 1
    assert scored["shortcut_ratio"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_evaluate_counts_test_images_whose_twins_were_trained_on(twin_folders, capsys):
    root, official, copy = twin_folders
    row = evaluate_saved(model_of(root, "copy"), official)
    # the copy's run trained on every twin but those of its own validation split
    held_out = set(training_data(Config(dataset=copy)).val_names)
    twins = read_twins(root / "official-jpeg-twins.txt")
    test_names = load_dataset(official).test_names
    unseen = sum(twins[str(Path(*Path(n).parts[1:]))] in held_out for n in test_names)
    assert row["seen_in_training"] == len(test_names) - unseen > 0
    main(["evaluate", model_of(root, "copy"), "--dataset", official])
    assert "these scores flatter the model" in capsys.readouterr().out


def test_shortcut_ratio_is_the_share_of_the_gain_left_on_real_pixels():
    assert shortcut_ratio(0.8, 3.2) == pytest.approx(0.25)
    assert shortcut_ratio(1.5, 1.5) == 1.0
    assert shortcut_ratio(0.5, 0.0) != shortcut_ratio(0.5, 0.0)  # nan: no gain to share


def test_evaluate_scores_an_embedding_model_against_a_bank(tmp_path, capsys):
    model = MLPAutoencoder((1, 8, 8), latent_dim=4)
    save_atomic(model_record(model, {"seed": 0}), tmp_path / "ae.pth")
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(tmp_path / "ae.pth"), "--dataset", "digits",
                 "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    # the bank is digits' own training split, whole: the cosine 20-NN vote, written out, of
    # the untrained model's test embeddings against it
    digits = load_dataset("digits")
    with torch.no_grad():
        bank, test = model.eval().embed(digits.train_images), model.embed(digits.test_images)
    assert row["knn_accuracy"] == pytest.approx(
        cosine_knn_accuracy(bank, digits.train_labels, test, digits.test_labels), abs=1e-9)
    # the probe (unit-tested in test_evaluation.py) on that same bank
    assert row["linear_probe_accuracy"] == pytest.approx(linear_probe_accuracy(
        bank, digits.train_labels, test, digits.test_labels), abs=1e-9)
    assert "kNN accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["missing.pth", "--dataset", "digits"], "does not exist"),
    (["MODEL", "--dataset", "cifar10-in-a-typo"], "unknown dataset"),
    (["MODEL", "--dataset", "digits", "--test-limit", "1"], "--test-limit must be 2 or more"),
])
def test_evaluate_errors_end_in_one_message(tmp_path, capsys, arguments, message):
    save_atomic(model_record(MLPAutoencoder((1, 8, 8), latent_dim=4), {}), tmp_path / "m.pth")
    arguments = [str(tmp_path / "m.pth") if a == "MODEL" else a for a in arguments]
    assert main(["evaluate", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_a_bank_leaves_out_the_twins_of_the_scored_images(tmp_path):
    official, copy = write_official_and_twins(tmp_path)
    save_atomic(model_record(MLPAutoencoder((3, 8, 8), latent_dim=4), {"seed": 0}),
                tmp_path / "ae.pth")
    row = evaluate_saved(str(tmp_path / "ae.pth"), official, bank=copy)
    # copy/train holds a twin of every official image: those of the 8 test images go
    assert row["test_images"] == 8 and row["bank_twins_excluded"] == 8
    own = evaluate_saved(str(tmp_path / "ae.pth"), official)  # its own training split
    assert own["bank_twins_excluded"] == 0


def test_evaluate_draws_a_separators_examples_and_refuses_other_models(tmp_path, capsys):
    from PIL import Image

    from latentlab.models import UNetSeparator

    official, _ = write_official_and_twins(tmp_path)
    save_atomic(model_record(UNetSeparator((3, 8, 8), width=4), {"seed": 0}),
                tmp_path / "sep.pth")
    picture = tmp_path / "examples.png"
    assert main(["evaluate", str(tmp_path / "sep.pth"), "--dataset", official,
                 "--examples", str(picture)]) == 0
    with Image.open(picture) as image:  # five rows: mixture, x1, x2 and the two outputs
        assert image.height > image.width / 4
    save_atomic(model_record(MLPAutoencoder((3, 8, 8), latent_dim=4), {}), tmp_path / "ae.pth")
    assert main(["evaluate", str(tmp_path / "ae.pth"), "--dataset", official,
                 "--examples", str(tmp_path / "no.png")]) == 2
    assert "not a separator" in capsys.readouterr().err and not (tmp_path / "no.png").exists()
