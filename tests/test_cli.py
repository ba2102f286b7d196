import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record
from latentlab.cli import main
from latentlab.config import Config
from latentlab.data.splits import training_data
from latentlab.files import save_atomic
from latentlab.models import ConvAutoencoder

from datafiles import png_bytes, write_image_folder
from references import cosine_knn_accuracy


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's own errors
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_train_autoencoder_on_digits_writes_every_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "train", "autoencoder", "--dataset", "digits", "--epochs", "2",
                           "--out", str(tmp_path))
    assert code == 0
    run_dir = tmp_path / "autoencoder"
    for name in ("autoencoder_loss.png", "autoencoder_embeddings.png",
                 "autoencoder_reconstructions.png", "autoencoder_model.pth", "metrics.json"):
        assert (run_dir / name).stat().st_size > 0, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("knn_accuracy", "linear_probe_accuracy", "silhouette",
                "mean_within_class_distance", "mean_between_class_distance",
                "reconstruction_mse", "reconstruction_psnr", "dataset", "epochs",
                "train_seconds", "device", "num_parameters"):
        assert key in metrics, key
    assert metrics["epochs"] == 2 and metrics["dataset"] == "digits"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["epochs"] == 2 and saved["code_version"]
    model = latentlab.load(run_dir / "autoencoder_model.pth").eval()
    assert model.embed(torch.rand(2, 1, 8, 8)).shape == (2, 32)
    # the recorded kNN accuracy is the cosine 20-NN vote, written out, of the saved model's
    # test embeddings against its training split (the run's validation images held out)
    data = training_data(Config(dataset="digits"))
    with torch.no_grad():
        train, test = model.embed(data.train_images), model.embed(data.test_images)
    assert metrics["knn_accuracy"] == pytest.approx(
        cosine_knn_accuracy(train, data.train_labels, test, data.test_labels), abs=1e-9)


@pytest.mark.slow
def test_toml_config_is_read_and_the_command_line_wins(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.toml").write_text('epochs = 1\nlatent-dim = 5\nbatch_size = 100\n')
    code, _, _ = run_cli(capsys, "train", "autoencoder", "--dataset", "digits", "--config",
                         str(tmp_path / "run.toml"), "--latent-dim", "6", "--out", str(tmp_path))
    assert code == 0
    saved = json.loads((tmp_path / "autoencoder" / "config.json").read_text())["config"]
    assert (saved["epochs"], saved["latent_dim"], saved["batch_size"]) == (1, 6, 100)


def bad_folder(tmp_path: Path, problem: str) -> str:
    root = tmp_path / "images"
    root.mkdir()
    if problem == "empty folder":
        return f"folder:{root}"
    write_image_folder(root, per_class=2)
    if problem == "mixed sizes":
        (root / "train" / "cat" / "big.png").write_bytes(png_bytes(np.zeros((9, 9, 3), np.uint8)))
    else:
        (root / "test" / "dog" / "readme.md").write_text("not an image")
    return f"folder:{root}"


@pytest.mark.parametrize("case, message", [
    ("unknown dataset", "unknown dataset 'imagenet'"),
    ("missing folder", "does not exist"),
    ("empty folder", "no images found"),
    ("mixed sizes", "different sizes"),
    ("non-image file", "readme.md is not an image"),
    ("zero epochs", "--epochs must be a positive whole number, not 0"),
    ("negative batch size", "--batch-size must be a positive whole number, not -5"),
    ("word for a number", "--epochs must be a whole number, not 'ten'"),
    ("bad device", "--device must be"),
    ("bad encoder", "--encoder must be one of"),
    ("missing config file", "config file"),
    ("checkpoint of another model", "checkpoint of another model"),
])
def test_bad_input_gives_one_clear_message_and_exit_code_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    args = ["train", "autoencoder", "--dataset", "digits", "--out", str(tmp_path), "--epochs", "1"]
    extra = {
        "unknown dataset": ["--dataset", "imagenet"],
        "missing folder": ["--dataset", f"folder:{tmp_path / 'nowhere'}"],
        "zero epochs": ["--epochs", "0"],
        "negative batch size": ["--batch-size", "-5"],
        "word for a number": ["--epochs", "ten"],
        "bad device": ["--device", "gpu"],
        "bad encoder": ["--encoder", "transformer"],
        "missing config file": ["--config", str(tmp_path / "none.toml")],
    }.get(case, [])
    if case in ("empty folder", "mixed sizes", "non-image file"):
        extra = ["--dataset", bad_folder(tmp_path, case)]
    if case == "checkpoint of another model":
        run_dir = tmp_path / "autoencoder"
        run_dir.mkdir()
        other = ConvAutoencoder((1, 8, 8), latent_dim=3)
        record = model_record(other, {}) | {"kind": "training", "experiment": "autoencoder",
                                            "hparams": other.hparams()}
        save_atomic(record, run_dir / "checkpoint.pth")
        extra = ["--resume"]
    code, _, err = run_cli(capsys, *args, *extra)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or err.startswith("usage")


def test_python_dash_m_is_the_same_program(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "latentlab", "datasets"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert "digits" in result.stdout and "folder:PATH" in result.stdout


def test_unknown_command_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "fly")
    assert code == 2 and "invalid choice" in err


@pytest.mark.parametrize("command", [
    ["train", "autoencoder"], ["train", "separator"], ["train", "vae"], ["vae-study"], ["run"],
    ["evaluate"], ["separate"], ["embed"], ["report"], ["datasets"]])
def test_every_command_prints_its_help(capsys: pytest.CaptureFixture[str],
                                       command: list[str]) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0 and "usage: latentlab" in out
    if command[0] in ("train", "vae-study", "run"):
        assert "else 10%)" in " ".join(out.split())  # a literal % survives argparse
