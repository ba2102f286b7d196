import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab import explorer
from latentlab.data import load_dataset
from latentlab.explorer import (
    dataset_key,
    explorer_data,
    nearest_neighbours,
    quantise,
    sprite_sheet,
)


def decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_nearest_neighbours_on_a_line_exact() -> None:
    indices, distances = nearest_neighbours(np.array([[0.0], [1.0], [2.0], [4.0]]), k=2)
    # point 1 is 1 away from both 0 and 2: the tie goes to the lower index
    assert indices.tolist() == [[1, 2], [0, 2], [1, 3], [2, 1]]
    assert distances.tolist() == [[1, 2], [1, 1], [1, 2], [2, 3]]


def test_nearest_neighbours_never_include_the_point_and_cut_k() -> None:
    x = np.zeros((3, 2))  # all identical: every other point is at distance 0
    indices, distances = nearest_neighbours(x, k=8)
    assert indices.tolist() == [[1, 2], [0, 2], [0, 1]]
    assert (distances == 0).all()
    assert nearest_neighbours(np.zeros((1, 4)), k=8)[0].shape == (1, 0)


def test_nearest_neighbours_match_brute_force_in_many_dimensions() -> None:
    x = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
    indices, distances = nearest_neighbours(x, k=5)
    full = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=2)
    np.fill_diagonal(full, np.inf)
    assert (indices == np.argsort(full, axis=1)[:, :5]).all()
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :5], rtol=1e-6)


def test_sprite_sheet_places_each_image_in_its_tile() -> None:
    images = torch.arange(5, dtype=torch.uint8).mul(50).view(5, 1, 1, 1).expand(5, 1, 3, 2)
    sheet = sprite_sheet(images.contiguous())
    assert sheet["tile"] == [3, 2] and sheet["columns"] == 3 and sheet["count"] == 5
    assert sheet["uri"].startswith("data:image/png;base64,")
    pixels = decode(sheet["uri"])
    assert pixels.shape == (6, 6)  # 2 rows x 3 columns of 3x2 tiles, grey
    for i in range(5):
        row, column = divmod(i, 3)
        assert (pixels[row * 3: row * 3 + 3, column * 2: column * 2 + 2] == 50 * i).all()
    assert (pixels[3:, 4:] == 0).all()  # the unused sixth tile is blank


def test_sprite_sheet_shrinks_large_images_and_keeps_colour() -> None:
    images = torch.zeros(2, 3, 96, 64, dtype=torch.uint8)
    images[:, 0] = 255  # red
    sheet = sprite_sheet(images, max_tile=48)
    assert sheet["tile"] == [48, 32]
    pixels = decode(sheet["uri"])
    assert pixels.shape == (48, 64, 3) and (pixels[..., 0] == 255).all()
    assert (pixels[..., 1:] == 0).all()


def test_sprite_sheet_turns_to_jpeg_when_png_is_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explorer, "PNG_LIMIT", 10)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert sprite_sheet(images)["uri"].startswith("data:image/jpeg;base64,")


def test_quantise_keeps_aspect_ratio() -> None:
    x, y = quantise(np.array([[0.0, 0.0], [2.0, 1.0], [1.0, 0.5]]))
    assert x == [0, 10_000, 5_000] and y == [0, 5_000, 2_500]
    assert quantise(np.zeros((0, 2))) == ([], [])


def write_run(folder: Path, config: dict, embeddings: np.ndarray, labels: np.ndarray,
              index: np.ndarray) -> None:
    folder.mkdir(parents=True)
    np.savez(folder / "test_embeddings.npz", embeddings=embeddings, labels=labels,
             tsne=np.stack([index, index * 2], 1).astype(float), tsne_index=index)
    (folder / "config.json").write_text(json.dumps({"config": config}))


def test_explorer_data_shares_one_gallery_per_test_set(tmp_path: Path) -> None:
    digits = load_dataset("digits")
    labels = digits.test_labels.numpy()
    config = {"dataset": "digits", "seed": 0}
    rng = np.random.default_rng(0)
    write_run(tmp_path / "a", config, rng.normal(size=(len(labels), 4)), labels,
              np.array([5, 1, 9]))
    write_run(tmp_path / "b", config, rng.normal(size=(len(labels), 6)), labels,
              np.array([9, 30]))
    write_run(tmp_path / "lost", {"dataset": "folder:/nowhere"},
              np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]),
              np.array([0, 1, 0]), np.array([0, 1, 2]))
    runs = [(name, tmp_path / name, json.loads((tmp_path / name / "config.json").read_text())[
        "config"]) for name in ("a", "b", "lost")]
    data = explorer_data(runs, k=2)
    assert data is not None
    a, b, lost = data["models"]
    assert len(data["galleries"]) == 1 and data["galleries"][0]["count"] == 4  # 1, 5, 9, 30
    assert a["gallery"] == b["gallery"] == 0 and lost["gallery"] is None
    assert a["tile"] == [1, 0, 2] and b["tile"] == [2, 3]
    assert a["testIndex"] == [5, 1, 9] and a["label"] == labels[[5, 1, 9]].tolist()
    assert a["dim"] == 4 and a["testCount"] == len(labels) and a["k"] == 2
    assert a["classNames"] == [str(i) for i in range(10)] and len(a["colours"]) == 10
    assert lost["classNames"] == ["0", "1"] and lost["neighbours"] == [1, 2, 0, 2, 1, 0]
    # tile 0 of the sprite is test image 1, drawn exactly
    tile = decode(data["galleries"][0]["uri"])[:8, :8]
    assert (tile == digits.test_images[1, 0].numpy()).all()


def test_explorer_data_is_none_without_embeddings(tmp_path: Path) -> None:
    assert explorer_data([("x", tmp_path, {})]) is None


def test_dataset_key_separates_different_test_sets() -> None:
    assert dataset_key({"dataset": "digits", "seed": 0}) == dataset_key(
        {"dataset": "digits", "seed": 0, "latent_dim": 3})
    assert dataset_key({"dataset": "digits", "test_limit": 10}) != dataset_key(
        {"dataset": "digits"})


def test_explorer_data_of_a_diverged_model_is_still_valid_json(tmp_path: Path) -> None:
    embeddings = np.array([[np.nan, 1.0], [0.0, np.inf], [1.0, 1.0]])
    write_run(tmp_path / "nan", {"dataset": "folder:/nowhere"}, embeddings,
              np.array([0, 1, 1]), np.array([0, 1, 2]))
    data = explorer_data([("nan", tmp_path / "nan", {"dataset": "folder:/nowhere"})])
    assert data is not None
    json.dumps(data, allow_nan=False)  # raises on NaN or infinity
