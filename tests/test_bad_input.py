"""Input a user can get wrong ends in one line and exit code 2, never a traceback: model
files that are not latentlab's, batch sizes a model cannot train with, splits too small to
train on, out-of-range numbers, folders and files swapped, memory that runs out."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record
from latentlab.cli import main, out_of_memory
from latentlab.errors import UserError
from latentlab.files import save_atomic
from latentlab.metrics.embeddings import linear_probe_accuracy
from latentlab.models import MLPAutoencoder, UNetSeparator

from datafiles import png_bytes, write_image_folder


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err
    return code, err


# ----------------------------------------------------------------------- not a latentlab file

def foreign_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(1000))
    elif kind == "plain dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "dict of numpy arrays":  # loading it needs the pickle that weights_only refuses
        torch.save({"weights": np.zeros(3)}, path)
    elif kind == "folder":
        path.mkdir()
    else:
        model = MLPAutoencoder((1, 8, 8), latent_dim=4)
        record = model_record(model, {})
        if kind == "unknown settings":
            record["hparams"]["depth"] = 7
        else:  # weights missing
            record["state_dict"] = {}
        save_atomic(record, path)
    return path


FOREIGN = {"garbage": "is not a latentlab model",
           "plain dict": "is a PyTorch file but not a latentlab model",
           "dict of numpy arrays": "is not a latentlab model: it holds Python objects",
           "folder": "is a folder, not a latentlab model",
           "unknown settings": "settings cannot be built",
           "weights missing": "weights do not fit it (12 missing, 0 unexpected)"}


@pytest.mark.parametrize("kind", FOREIGN)
def test_load_refuses_a_file_latentlab_did_not_write_in_one_line(tmp_path: Path,
                                                                 kind: str) -> None:
    with pytest.raises(UserError, match=re.escape(FOREIGN[kind])) as error:
        latentlab.load(foreign_file(tmp_path, kind))
    message = str(error.value)
    assert "\n" not in message
    # never PyTorch's advice to unpickle a file of unknown origin
    assert "weights_only" not in message and "trust" not in message


@pytest.mark.parametrize("command", ["evaluate", "embed", "separate"])
@pytest.mark.parametrize("kind", ["garbage", "plain dict", "dict of numpy arrays"])
def test_commands_refuse_a_file_latentlab_did_not_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, kind: str) -> None:
    path = foreign_file(tmp_path, kind)
    image = tmp_path / "blend.png"
    image.write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    args = {"evaluate": ["evaluate", path, "--dataset", "digits"],
            "embed": ["embed", path, "digits", "--out", tmp_path / "embedded"],
            "separate": ["separate", path, image, "--out", tmp_path / "separated"]}[command]
    code, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith(f"latentlab: error: {path} ") and FOREIGN[kind] in err
    assert "weights_only" not in err


# ----------------------------------------------------------------------- what a run can train on

@pytest.mark.parametrize("experiment", ["contrastive", "supcon", "simclr", "separator"])
def test_batch_size_below_what_the_experiment_trains_with(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], experiment: str) -> None:
    code, err = run_cli(capsys, "train", experiment, "--dataset", "digits", "--batch-size", "1",
                        "--epochs", "1", "--out", tmp_path)
    assert code == 2
    assert f"--batch-size must be 2 or more for {experiment} (" in err
    assert "not 1; the default is 256" in err


@pytest.mark.parametrize("experiment, smallest", [("autoencoder", 1), ("vae", 1),
                                                   ("supcon", 2), ("separator", 2)])
def test_each_experiment_says_which_batch_sizes_it_trains_with(
        capsys: pytest.CaptureFixture[str], experiment: str, smallest: int) -> None:
    with pytest.raises(SystemExit):
        main(["train", experiment, "--help"])
    assert f"{experiment} trains with {smallest} or more" in " ".join(
        capsys.readouterr().out.split())


def test_autoencoder_trains_with_a_batch_of_one(one_thread: None, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli(capsys, "train", "autoencoder", "--dataset", "digits", "--batch-size", "1",
                      "--epochs", "1", "--train-limit", "6", "--test-limit", "20",
                      "--tsne-points", "4", "--out", tmp_path)
    assert code == 0


def image_folder(tmp_path: Path, case: str) -> str:
    root = tmp_path / case.replace(" ", "-")
    if case == "one image":
        write_image_folder(root, classes=("cat",), per_class=1, splits=())
    elif case == "two images":  # one per class: a fifth of each class, rounded, is none
        write_image_folder(root, classes=("cat", "dog"), per_class=1, splits=())
    elif case == "one class":
        write_image_folder(root, classes=("cat",), per_class=6)
    return f"folder:{root}"


@pytest.mark.parametrize("experiment, case, message", [
    ("autoencoder", "--train-limit 1", "leaves 1 training and 0 validation images; "
     "autoencoder needs 1 or more to train on and 1 or more to validate on: give 2 or more"),
    ("contrastive", "--train-limit 2", "leaves 1 training and 1 validation images; "
     "contrastive needs 2 or more to train on and 1 or more to validate on: give 4 or more"),
    ("separator", "--train-limit 4 --protocol assignment", "leaves 2 training and 2 "
     "validation images; separator needs 3 or more to train on and 1 or more to validate on: "
     "give 5 or more"),
    ("autoencoder", "one image", "has no test images"),
    ("vae", "two images", "has no test images"),
    ("contrastive", "one class", "contrastive learns from images of different classes"),
    ("supcon", "one class", "are all of one class; give two or more classes, or train simclr"),
])
def test_splits_too_small_to_train_on(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      experiment: str, case: str, message: str) -> None:
    if case.startswith("--"):
        data = ["--dataset", "digits", *case.split()]
    else:
        data = ["--dataset", image_folder(tmp_path, case)]
    code, err = run_cli(capsys, "train", experiment, *data, "--epochs", "1", "--out", tmp_path)
    assert code == 2
    assert message in err


def test_the_linear_probe_of_a_single_class_is_nan_not_an_error() -> None:
    embeddings = torch.randn(6, 4)
    assert np.isnan(linear_probe_accuracy(embeddings, torch.zeros(6, dtype=torch.long),
                                          embeddings, torch.arange(6) % 2))


def test_a_run_that_diverges_says_so(one_thread: None, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "train", "autoencoder", "--dataset", "digits",
                        "--learning-rate", "1e30", "--epochs", "2", "--train-limit", "100",
                        "--out", tmp_path)
    assert code == 2
    assert "training diverged in epoch" in err and "lower --learning-rate (now 1e+30)" in err


# ----------------------------------------------------------------------- numbers, files, folders

@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be a whole number from 0 to 4294967295, not -1"),
    (["--seed", str(2**64)], "--seed must be a whole number from 0 to 4294967295"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number, not inf"),
    (["--time-budget", "inf"], "--time-budget must be a finite number, not inf"),
])
def test_numbers_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              args: list[str], message: str) -> None:
    code, err = run_cli(capsys, "train", "autoencoder", "--dataset", "digits", *args,
                        "--out", tmp_path)
    assert code == 2 and message in err


def test_a_file_where_a_folder_belongs_and_the_reverse(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.pth"
    save_atomic(model_record(MLPAutoencoder((1, 8, 8), latent_dim=4), {"dataset": "digits"}),
                model)
    separator = tmp_path / "separator.pth"
    save_atomic(model_record(UNetSeparator((1, 8, 8), width=4), {}), separator)
    image = tmp_path / "blend.png"
    image.write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for args in (["train", "autoencoder", "--dataset", "digits", "--out", a_file],
                 ["embed", model, "digits", "--out", a_file],
                 ["separate", separator, image, "--out", a_file]):
        code, err = run_cli(capsys, *args)
        assert code == 2 and f"--out {a_file} is a file; give a folder to write into" in err
    code, err = run_cli(capsys, "report", a_file)
    assert code == 2 and f"results folder {a_file} is a file" in err
    code, err = run_cli(capsys, "embed", separator, "digits", "--out", tmp_path / "e")
    assert code == 2 and "holds a separator (UNetSeparator), which has no embedding" in err
    code, err = run_cli(capsys, "evaluate", model, "--dataset", "digits", "--out", tmp_path)
    assert code == 2 and "is a folder; give the name of a .json file" in err
    code, err = run_cli(capsys, "embed", model, "digits", "--out", tmp_path / "e",
                        "--device", "tpu")
    assert code == 2 and "--device must be auto, cpu, cuda or cuda:N, not 'tpu'" in err


def test_an_unwritable_place_and_exhausted_memory_end_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from latentlab import cli

    def unwritable(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/results/autoencoder")

    monkeypatch.setattr(cli, "command_datasets", unwritable)
    code, err = run_cli(capsys, "datasets")
    assert (code, err.strip()) == (2, "latentlab: error: cannot read or write "
                                      "/results/autoencoder: Permission denied")

    def exhausted(args: object) -> int:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 53687091200 bytes.")

    monkeypatch.setattr(cli, "command_datasets", exhausted)
    code, err = run_cli(capsys, "datasets")
    assert code == 2 and "out of memory (it asked for 50.0 GiB at once); lower --batch-size" in err
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
