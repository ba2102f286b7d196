import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentlab.checkpoint import model_record
from latentlab.cli import main
from latentlab.data import load_dataset
from latentlab.errors import UserError
from latentlab.export import embed_images, read_images, read_projector_tsv, write_projector_tsv
from latentlab.files import save_atomic
from latentlab.models import MLPAutoencoder

from datafiles import png_bytes, write_image_folder


def test_projector_tsv_round_trips_float32_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    embeddings = (rng.normal(size=(50, 7)) * 10.0 ** rng.integers(-8, 8, (50, 7))
                  ).astype(np.float32)
    embeddings[0, :3] = [0.1, -0.0, 1e-30]
    labels = np.array([i % 3 for i in range(49)] + [-1])
    names = [f"test:{i}" for i in range(49)] + ["odd\tname\nhere.png"]
    write_projector_tsv(embeddings, labels, ["cat", "dog", "bird"], names, tmp_path)
    vectors, metadata = read_projector_tsv(tmp_path)
    assert vectors.dtype == np.float32 and (vectors == embeddings).all()
    assert metadata[0] == {"label": "0", "class": "cat", "name": "test:0"}
    assert metadata[-1] == {"label": "-1", "class": "", "name": "odd name here.png"}
    # the Embedding Projector's layout: no header on vectors, a header on metadata
    lines = (tmp_path / "vectors.tsv").read_text().splitlines()
    assert len(lines) == 50 and all(len(line.split("\t")) == 7 for line in lines)
    with open(tmp_path / "metadata.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["label", "class", "name"] and len(rows) == 51


def test_embed_images_batches_equal_sizes_and_matches_one_by_one() -> None:
    torch.manual_seed(0)
    model = MLPAutoencoder((1, 8, 8), latent_dim=4).eval()
    images = [torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8) for _ in range(5)]
    images.insert(2, torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8))  # resized on the way
    together = embed_images(model, images, batch_size=2)
    alone = np.concatenate([model.embed(i[None]).detach().numpy() for i in images])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_read_images_from_folders_single_files_and_datasets(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_image_folder(root, per_class=2)
    found = read_images(str(root))
    assert found.class_names == ["cat", "dog"] and len(found.images) == len(found.names)
    assert sorted(found.labels.tolist()) == [0] * (len(found.names) // 2) + [1] * (
        len(found.names) // 2)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        (flat / f"{i}.png").write_bytes(png_bytes(np.full((4, 4, 3), 40 * i, np.uint8)))
    found = read_images(str(flat), limit=2)
    assert found.class_names == [] and found.labels.tolist() == [-1, -1]
    assert found.names == ["0.png", "1.png"]
    one = read_images(str(flat / "2.png"))
    assert one.names == ["2.png"] and one.images[0].shape == (3, 4, 4)
    assert int(one.images[0].max()) == 80
    digits = read_images("digits", split="all", limit=5)
    assert digits.names == [f"train:{i}" for i in range(5)]
    with pytest.raises(UserError, match="--split must be one of test, train, all"):
        read_images("digits", split="val")


@pytest.fixture
def digits_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = MLPAutoencoder((1, 8, 8), latent_dim=6)
    path = tmp_path / "autoencoder_model.pth"
    save_atomic(model_record(model, {"dataset": "digits"}, class_names=list("0123456789")),
                path)
    return path


def test_embed_command_writes_npy_and_projector_files(tmp_path: Path, digits_model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "embedded"
    assert main(["embed", str(digits_model), "digits", "--out", str(out)]) == 0
    assert "vectors.tsv" in capsys.readouterr().out
    embeddings, labels = np.load(out / "embeddings.npy"), np.load(out / "labels.npy")
    test = load_dataset("digits")
    assert embeddings.shape == (len(test.test_labels), 6)
    assert (labels == test.test_labels.numpy()).all()
    vectors, metadata = read_projector_tsv(out)
    assert (vectors == embeddings).all()
    assert [m["class"] for m in metadata[:3]] == [str(int(y)) for y in labels[:3]]
    info = json.loads((out / "embeddings.json").read_text())
    assert info["count"] == len(labels) and info["dimensions"] == 6


@pytest.mark.parametrize("source, message", [
    ("imagenet", "unknown dataset 'imagenet'"),
    ("EMPTY", "no images found"),
])
def test_embed_command_errors(tmp_path: Path, digits_model: Path, source: str, message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    if source == "EMPTY":
        (tmp_path / "empty").mkdir()
        source = str(tmp_path / "empty")
    assert main(["embed", str(digits_model), source, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "nope.pth"), "digits", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
