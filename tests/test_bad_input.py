"""Input a user can get wrong ends in one line and exit code 2, never a traceback: model
files that are not latentlab's."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import latentlab
from latentlab.checkpoint import model_record, save_atomic
from latentlab.cli import main
from latentlab.errors import UserError
from latentlab.models import MLPAutoencoder

from datafiles import png_bytes


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
