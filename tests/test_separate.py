"""`latentlab separate`: blends and --mix pairs split by a saved separator."""

import pytest
import torch
from PIL import Image

import latentlab
from latentlab.checkpoint import model_record
from latentlab.cli import main
from latentlab.files import save_atomic
from latentlab.models import MLPAutoencoder
from latentlab.separate import output_stems, read_image

pytestmark = pytest.mark.usefixtures("one_thread")


def write_png(path, size, colour):
    Image.new("RGB", size, colour).save(path)
    return str(path)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        ([model], "give the blended images (or folders of them) to separate, or --mix A B"),
        ([model, image, "--mix", image, image], "not both"),
        ([model, str(empty)], "holds no images"),
    ]
    for args, message in cases:
        assert main(["separate", *args]) == 2
        assert message in capsys.readouterr().err
