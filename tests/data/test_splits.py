"""Exclusion lists, JPEG twins, extra training images and the validation split."""

import json
import math

import pytest
import torch

from latentlab.cli import main
from latentlab.config import Config, from_dict
from latentlab.data import load_dataset
from latentlab.data.folders import name_ends, read_names
from latentlab.data.splits import training_data, validation_size
from latentlab.errors import UserError

from datafiles import write_image_folder, write_official_and_twins


def codes(images: torch.Tensor) -> set[int]:
    """The number each unique_image spells out."""
    return {int(a) + 256 * int(b) for a, b in images[:, :2, 0, 0].tolist()}


def test_name_ends_let_a_list_leave_out_wrapping_folders():
    assert name_ends("official/cat/o001.png") == ["official/cat/o001.png", "cat/o001.png"]
    assert name_ends("o001.png") == ["o001.png"]


def test_no_twin_of_a_validation_or_test_image_reaches_training(tmp_path):
    official, copy = write_official_and_twins(tmp_path)
    data = training_data(Config(dataset=official, extra_train=copy, seed=3))
    held_out = codes(data.test_images) | codes(data.val_images)
    assert len(held_out) == len(data.test_images) + len(data.val_images)
    # the official training images and their twins train; no held-out image does, in any form
    assert codes(data.train_images).isdisjoint(held_out)
    assert len(data.train_labels) == 2 * (40 - len(held_out))
    assert len(data.train_names) == len(data.train_labels)


def test_exclusion_is_exact_and_matches_names_without_their_wrapping_folder(tmp_path):
    official, copy = write_official_and_twins(tmp_path)
    listed = tmp_path / "keep-out.txt"
    listed.write_text("# two official images, one copy\ncat/o000.png dog/o005.png\n"
                      "train/dog/0007.png\n")
    assert read_names(listed) == {"cat/o000.png", "dog/o005.png", "train/dog/0007.png"}
    for spec, dropped in ((official, {0, 1005}), (copy, {1007})):
        data = training_data(Config(dataset=spec, exclude=str(listed), validation=1))
        plain = training_data(Config(dataset=spec, validation=1))
        kept = codes(data.train_images) | codes(data.val_images)
        assert torch.equal(data.test_images, plain.test_images)
        # exactly the listed images are gone: none of them trains, every other image does
        assert kept == (codes(plain.train_images) | codes(plain.val_images)) - dropped
        assert len(plain.train_labels) - len(data.train_labels) == len(
            dropped - codes(plain.test_images))


def test_oversampling_repeats_the_datasets_own_training_images(tmp_path):
    official, copy = write_official_and_twins(tmp_path)
    once = training_data(Config(dataset=official, validation=4))
    thrice = training_data(Config(dataset=official, validation=4, oversample=3))
    images, labels = thrice.epoch_images()
    assert len(labels) == len(images) == 3 * len(once.train_labels)
    assert codes(images[torch.arange(len(images))]) == codes(once.train_images)
    # each image is held once (a kNN bank counts it once); the epoch repeats it by index
    assert torch.equal(thrice.train_images, once.train_images)
    counts = torch.bincount(images.index, minlength=len(once.train_labels))
    assert counts.tolist() == [3] * len(once.train_labels)
    assert torch.equal(thrice.val_images, once.val_images)
    # --extra-train images are not repeated
    both = training_data(Config(dataset=official, extra_train=copy, validation=4, oversample=3))
    images, labels = both.epoch_images()
    assert len(labels) == 3 * len(once.train_labels) + (len(both.train_labels)
                                                        - len(once.train_labels))


def test_validation_split_is_seeded_and_sized_by_the_training_set():
    assert validation_size(50_000, None) == 5_000
    assert validation_size(4_068, None) == 407
    assert validation_size(10, None) == 2
    assert validation_size(100, 30) == 30
    with pytest.raises(UserError, match="leaves no training images"):
        validation_size(100, 100)
    first = training_data(Config(dataset="digits", seed=1))
    again = training_data(Config(dataset="digits", seed=1))
    other = training_data(Config(dataset="digits", seed=2))
    assert torch.equal(first.val_images, again.val_images)
    assert not torch.equal(first.val_images, other.val_images)
    digits = len(load_dataset("digits").train_labels)
    assert len(first.val_labels) == round(0.1 * digits)
    assert len(first.train_labels) == digits - len(first.val_labels)


@pytest.mark.parametrize("options, message", [
    ({"exclude": "missing.txt"}, "does not exist"),
    ({"validation": 0}, "positive whole number"),
    ({"oversample": 0}, "positive whole number"),
])
def test_bad_split_options_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        Config(dataset="digits", **options).validate()


def test_exclusion_needs_a_folder_dataset(tmp_path):
    listed = tmp_path / "names.txt"
    listed.write_text("3.png\n")
    with pytest.raises(UserError, match="not a folder dataset"):
        training_data(Config(dataset="digits", exclude=str(listed)))


def test_extra_training_images_must_match_in_size_and_classes(tmp_path):
    official, _ = write_official_and_twins(tmp_path)
    with pytest.raises(UserError, match="must match"):
        training_data(Config(dataset=official, extra_train="digits"))


def test_validation_batches_of_a_class_sorted_folder_mix_the_classes(tmp_path):
    root = write_image_folder(tmp_path / "sorted", classes=("a", "b"), per_class=300,
                              splits=())
    data = training_data(Config(dataset=f"folder:{root}", validation=200))
    assert data.val_labels is not None and len(data.val_labels) == 200
    # read class by class, yet the first 100 validation images hold both classes
    assert 30 < int(data.val_labels[:100].sum()) < 70
    assert [n.split("/")[-2] for n in data.val_names] == [
        "ab"[label] for label in data.val_labels.tolist()]


@pytest.mark.slow
def test_supcon_validation_loss_falls_on_a_class_sorted_folder(tmp_path):
    root = write_image_folder(tmp_path / "sorted", classes=("a", "b"), per_class=1000,
                              splits=())
    assert main(["train", "supcon", "--dataset", f"folder:{root}", "--validation", "1000",
                 "--epochs", "4", "--batch-size", "100", "--encoder", "mlp",
                 "--tsne-points", "20", "--out", str(tmp_path / "out")]) == 0
    history = json.loads((tmp_path / "out" / "supcon" / "history.json").read_text())
    # a batch of 500 images of one class cannot score below log(499): the loss would sit
    # there while the training loss falls (two classes mixed: down to log(249))
    assert history[-1]["val_loss"] < math.log(499) - 0.4
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_the_test_split_stays_put_across_training_seeds(tmp_path):
    root = write_image_folder(tmp_path / "flat", classes=("a", "b"), per_class=20, splits=())
    spec = f"folder:{root}"
    runs = [training_data(Config(dataset=spec, seed=seed)) for seed in (0, 1, 2)]
    for data in runs[1:]:  # the seed varies validation and training, never the test images
        assert data.test_names == runs[0].test_names
        assert data.val_names != runs[0].val_names
    moved = training_data(Config(dataset=spec, seed=0, test_seed=5))
    assert moved.test_names != runs[0].test_names
    limited = [training_data(Config(dataset=spec, seed=s, test_limit=4)) for s in (0, 1)]
    assert limited[0].test_names == limited[1].test_names


def test_runs_from_before_test_seed_keep_the_test_split_they_held_out():
    assert from_dict({"seed": 3}).test_seed == 3
    assert from_dict({"seed": 3, "test_seed": 0}).test_seed == 0


def test_a_knn_bank_holds_each_image_once_beside_extra_twins(tmp_path):
    official, copy = write_official_and_twins(tmp_path)
    data = training_data(Config(dataset=official, extra_train=copy, validation=4))
    images, labels = data.bank()
    # the official training images and their JPEG 'twins' both train ...
    assert len(data.train_labels) == 2 * len(codes(data.train_images))
    # ... but the bank counts each image once
    assert len(labels) == len(images) == len(codes(images)) == len(codes(data.train_images))


def test_an_empty_or_unmatched_exclusion_list_is_an_error(tmp_path):
    official, _ = write_official_and_twins(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(UserError, match="lists no image names"):
        training_data(Config(dataset=official, exclude=str(empty)))
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("cifar10/train/cat/0001.jpg\n")
    with pytest.raises(UserError, match="none of"):
        training_data(Config(dataset=official, exclude=str(elsewhere)))
