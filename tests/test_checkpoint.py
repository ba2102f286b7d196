from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import latentlab
from latentlab.checkpoint import model_record
from latentlab.errors import UserError
from latentlab.files import save_atomic
from latentlab.models import ConvAutoencoder, MLPAutoencoder


def saved_model(tmp_path: Path, model: torch.nn.Module) -> Path:
    path = tmp_path / "model.pth"
    save_atomic(model_record(model, {"dataset": "digits"}, class_names=["a", "b"]), path)
    return path


def test_load_round_trip_gives_the_same_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MLPAutoencoder((1, 8, 8), latent_dim=4).eval()
    loaded = latentlab.load(saved_model(tmp_path, model))
    images = torch.rand(5, 1, 8, 8)
    assert torch.equal(loaded.embed(images), model.embed(images))
    assert loaded.reconstruct(images).shape == (5, 1, 8, 8)
    assert loaded.class_names == ["a", "b"] and loaded.config == {"dataset": "digits"}
    assert not loaded.training


def test_api_converts_native_images_to_what_the_model_needs(tmp_path: Path) -> None:
    model = latentlab.load(saved_model(tmp_path, ConvAutoencoder((3, 32, 32), latent_dim=6)))
    grey_8x8 = torch.rand(4, 1, 8, 8)
    uint8_rgba = torch.randint(0, 256, (2, 4, 40, 40), dtype=torch.uint8)
    assert model.embed(grey_8x8).shape == (4, 6)
    assert model.embed(uint8_rgba).shape == (2, 6)
    assert model.embed(torch.rand(3, 32, 32)).shape == (1, 6)  # one image without a batch
    reconstruction = model.reconstruct(grey_8x8)
    assert reconstruction.shape == (4, 3, 32, 32)
    assert 0 <= float(reconstruction.min()) and float(reconstruction.max()) <= 1


def test_api_takes_pil_images_and_channels_last_arrays() -> None:
    model = MLPAutoencoder((3, 8, 8), latent_dim=4)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = model.prepare(torch.from_numpy(pixels).permute(2, 0, 1))  # (C, H, W)
    pixels.flags.writeable = False  # as np.asarray(PIL image) gives it
    assert torch.equal(model.prepare(pixels), expected)  # (H, W, C)
    assert torch.equal(model.prepare(np.stack([pixels] * 2)), expected.expand(2, -1, -1, -1))
    assert torch.equal(model.prepare(Image.fromarray(pixels)), expected)
    grey = Image.fromarray(pixels[:, :, 0])
    assert torch.equal(model.prepare(grey), model.prepare(torch.from_numpy(pixels[:, :, 0].copy())))
    with_alpha = Image.fromarray(np.dstack([pixels, np.zeros((8, 8), np.uint8)]))
    assert torch.equal(model.prepare(with_alpha), expected)  # alpha dropped


@pytest.mark.parametrize("images, message", [
    (torch.rand(2, 3, 8, 8) * 255, "divide 0..255 pixels by 255"),
    (torch.rand(2, 2, 8, 8), "1, 3 or 4 channels"),
    (torch.rand(2, 2, 3, 8, 8), "shape"),
    ("not an image", "tensor, numpy array or PIL image"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "uint8 or float"),
])
def test_api_refuses_images_it_cannot_convert(tmp_path: Path, images: object,
                                              message: str) -> None:
    model = MLPAutoencoder((3, 8, 8), latent_dim=4)
    with pytest.raises(UserError, match=message):
        model.embed(images)


def test_unchecked_prepare_skips_the_value_checks_the_training_loop_cannot_afford() -> None:
    # (on a GPU each check waits for the queued steps; dataset batches need none)
    model = MLPAutoencoder((3, 8, 8), latent_dim=4)
    scaled = torch.rand(2, 3, 8, 8) * 255
    with pytest.raises(UserError, match="divide 0..255"):
        model.prepare(scaled)
    assert float(model.prepare(scaled, checked=False).max()) <= 1


def test_truncated_checkpoint_gives_a_clear_message(tmp_path: Path) -> None:
    path = saved_model(tmp_path, MLPAutoencoder((1, 8, 8), latent_dim=4))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="is not a latentlab model: it is not a PyTorch file"):
        latentlab.load(path)


def test_foreign_pytorch_file_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a latentlab model"):
        latentlab.load(tmp_path / "other.pth")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        latentlab.load(tmp_path / "nothing.pth")


def test_atomic_save_leaves_no_partial_file(tmp_path: Path) -> None:
    class Unsaveable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("cannot pickle")

    path = tmp_path / "x.pth"
    save_atomic({"ok": 1}, path)
    with pytest.raises(RuntimeError):
        save_atomic({"bad": Unsaveable()}, path)
    assert torch.load(path, weights_only=True) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pth"]
