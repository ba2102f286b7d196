import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from latentlab.data import describe_datasets, folders, load_dataset, official
from latentlab.data.official import OFFICIAL
from latentlab.errors import UserError

from datafiles import (
    cifar_batch,
    png_bytes,
    tar_cifar,
    write_cifar_folder,
    write_image_folder,
    write_mnist,
    zip_folder,
)


def test_cifar_pickle_batches_are_read_in_channel_order(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path, n=20)
    loaded = load_dataset("cifar10", data_dir=tmp_path)
    assert loaded.train_images.shape == (100, 3, 32, 32)
    assert loaded.test_images.shape == (20, 3, 32, 32)
    expected = cifar_batch(20, 1)["data"][3].reshape(3, 32, 32)
    assert torch.equal(loaded.train_images[3], torch.from_numpy(expected))
    assert loaded.train_labels[:10].tolist() == list(range(10))
    assert loaded.class_names[0] == "airplane" and loaded.class_names[9] == "truck"


def test_cifar_is_read_straight_from_the_official_archive(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path / "unpacked", n=4)
    tar_cifar(folder, tmp_path / "cifar-10-python.tar.gz")
    from_archive = load_dataset("cifar10", data_dir=tmp_path)
    from_folder = load_dataset("cifar10", data_dir=tmp_path / "unpacked")
    assert torch.equal(from_archive.train_images, from_folder.train_images)


def test_damaged_cifar_batch_is_named(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path, n=4)
    (folder / "data_batch_3").write_bytes(pickle.dumps(cifar_batch(4, 3))[:50])
    with pytest.raises(UserError, match="data_batch_3.*damaged"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_idx_gz_files_are_read(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    loaded = load_dataset("mnist", data_dir=tmp_path)
    assert loaded.train_images.shape == (30, 1, 28, 28)
    assert loaded.test_labels.tolist() == list(range(10))
    assert loaded.train_images.dtype == torch.uint8


def test_fashion_mnist_in_the_torchvision_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw")
    loaded = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert loaded.class_names[9] == "Ankle boot"


def test_truncated_idx_file_is_named(tmp_path: Path) -> None:
    root = write_mnist(tmp_path / "mnist")
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz is damaged"):
        load_dataset("mnist", data_dir=tmp_path)


def test_download_with_a_wrong_checksum_is_refused_and_deleted(
        http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    mirror, url = http_mirror
    write_mnist(mirror)  # the right names, other contents
    spec = OFFICIAL["mnist"]
    monkeypatch.setattr(spec, "mirrors", [url])
    with pytest.raises(UserError, match="failed its checksum"):
        load_dataset("mnist")
    assert not (isolated_cache / "datasets" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_download_with_the_right_checksum_is_used(
        http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    mirror, url = http_mirror
    write_mnist(mirror)
    spec = OFFICIAL["mnist"]
    files = [(name, hashlib.md5((mirror / name).read_bytes()).hexdigest())
             for name, _ in spec.files]
    monkeypatch.setattr(spec, "files", files)
    monkeypatch.setattr(spec, "mirrors", [url])
    assert load_dataset("mnist").train_images.shape == (30, 1, 28, 28)


def test_missing_dataset_without_network_says_where_to_put_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OFFICIAL["cifar10"], "mirrors", ["http://127.0.0.1:9/"])  # nothing there
    monkeypatch.setattr(official, "search_roots", lambda d: [tmp_path / "nothing"])
    with pytest.raises(UserError, match="could not be downloaded.*Put cifar-10-python.tar.gz in"):
        load_dataset("cifar10")


def test_unknown_dataset() -> None:
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_image_folder_with_splits(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "pets", per_class=3)
    loaded = load_dataset(f"folder:{tmp_path / 'pets'}")
    assert loaded.class_names == ["cat", "dog"]
    assert loaded.train_images.shape == (6, 3, 8, 8)
    assert loaded.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(loaded.train_images[3, 0, 1, 1]) == 40  # dog pixels


def test_zip_with_a_wrapping_folder_equals_the_directory(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "pets", per_class=3)
    archive = zip_folder(folder, tmp_path / "pets.zip", prefix="pets/")
    from_zip = load_dataset(f"folder:{archive}")
    from_dir = load_dataset(f"folder:{folder}")
    assert torch.equal(from_zip.train_images, from_dir.train_images)
    assert torch.equal(from_zip.test_labels, from_dir.test_labels)


def test_folder_without_splits_gets_a_seeded_stratified_holdout(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "pets", per_class=10, splits=())
    first = load_dataset(f"folder:{tmp_path / 'pets'}", seed=3)
    again = load_dataset(f"folder:{tmp_path / 'pets'}", seed=3)
    assert len(first.train_labels) == 16 and len(first.test_labels) == 4
    assert first.test_labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(first.test_images, again.test_images)


def test_decoded_folder_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_folder(tmp_path / "pets", per_class=2)
    first = load_dataset(f"folder:{tmp_path / 'pets'}")
    monkeypatch.setattr(folders, "decode_image", lambda *a: pytest.fail("decoded again"))
    second = load_dataset(f"folder:{tmp_path / 'pets'}")
    assert torch.equal(first.train_images, second.train_images)


@pytest.mark.parametrize("problem, message", [
    ("missing", "does not exist"),
    ("empty", "no images found"),
    ("mixed sizes", "different sizes"),
    ("text file", "notes.txt is not an image"),
    ("broken image", "is not a readable image"),
])
def test_bad_folders_give_one_clear_error(tmp_path: Path, problem: str, message: str) -> None:
    root = tmp_path / "images"
    if problem != "missing":
        root.mkdir()
    if problem in ("mixed sizes", "text file", "broken image"):
        write_image_folder(root, per_class=2)
    if problem == "mixed sizes":
        (root / "train" / "cat" / "big.png").write_bytes(png_bytes(np.zeros((9, 9, 3), np.uint8)))
    if problem == "text file":
        (root / "train" / "cat" / "notes.txt").write_text("hello")
    if problem == "broken image":
        (root / "train" / "dog" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=message):
        load_dataset(f"folder:{root}")


def test_digits_are_offline_and_scaled_to_bytes() -> None:
    loaded = load_dataset("digits")
    assert loaded.image_shape == (1, 8, 8)
    assert len(loaded.train_labels) + len(loaded.test_labels) == 1797
    assert int(loaded.train_images.max()) == 255


def test_limit_takes_a_seeded_subset() -> None:
    loaded = load_dataset("digits")
    small = loaded.limit(100, 20, seed=1)
    assert len(small.train_labels) == 100 and len(small.test_labels) == 20
    assert torch.equal(small.train_images, loaded.limit(100, 20, seed=1).train_images)


def test_describe_datasets_reports_where_each_was_found(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    found = dict(describe_datasets(tmp_path))
    assert found["mnist"] == f"found in {tmp_path / 'mnist'}"
    assert set(found) == {"cifar10", "mnist", "fashion-mnist", "digits", "folder:PATH"}
