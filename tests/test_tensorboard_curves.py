from pathlib import Path

import pytest

from latentlab import tensorboard_curves
from latentlab.cli import build_parser, resolve_config
from latentlab.config import Config, coerce
from latentlab.data import load_dataset
from latentlab.errors import UserError
from latentlab.experiments import shared
from latentlab.models import MLPAutoencoder
from latentlab.tensorboard_curves import scalar_tags, write_curves
from latentlab.training import TrainResult

HISTORY = [{"epoch": 1, "seconds": 2.0, "train_loss": 0.5, "val_loss": 0.75,
            "train_knn_accuracy": 0.25},
           {"epoch": 2, "seconds": 1.5, "train_loss": 0.25, "val_loss": float("nan")}]


def test_scalar_tags_group_train_and_validation_of_one_quantity() -> None:
    assert scalar_tags(HISTORY[0]) == {"seconds": 2.0, "loss/train": 0.5, "loss/val": 0.75,
                                       "knn_accuracy/train": 0.25}
    assert scalar_tags(HISTORY[1]) == {"seconds": 1.5, "loss/train": 0.25}  # NaN left out


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("yes", True),
                                             ("0", False)])
def test_tensorboard_option_reads_booleans(value: object, expected: bool) -> None:
    assert coerce("tensorboard", value) is expected


def test_tensorboard_option_refuses_other_values() -> None:
    with pytest.raises(UserError, match="--tensorboard must be true or false, not 'maybe'"):
        coerce("tensorboard", "maybe")


def test_event_files_read_back_as_the_history(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="pip install 'latentlab[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert write_curves(HISTORY, tmp_path / "tb") == tmp_path / "tb"
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["knn_accuracy/train", "loss/train", "loss/val",
                                                "seconds"]
    assert [(e.step, e.value) for e in events.Scalars("loss/train")] == [(1, 0.5), (2, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("loss/val")] == [(1, 0.75)]


def test_the_tensorboard_flag_reaches_the_config_and_finish_writes_events(
        tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "autoencoder", "--dataset", "digits",
                                      "--tensorboard", "--out", str(tmp_path)])
    config = resolve_config(args, "autoencoder")
    assert config.tensorboard is True
    assert resolve_config(build_parser().parse_args(["train", "autoencoder"]),
                          "autoencoder").tensorboard is False
    data = load_dataset("digits").limit(20, 10)
    model = MLPAutoencoder(data.image_shape, latent_dim=2)
    shared.start_run(config)
    shared.finish(model, config, data, TrainResult(HISTORY, 1.0), "autoencoder", {})
    events = list((config.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == (1 if tensorboard_curves.available() else 0)


def test_without_tensorboard_a_run_says_so_once_and_writes_no_events(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorboard_curves, "available", lambda: False)
    shared.start_run(Config(tensorboard=True, out=str(tmp_path)))
    assert capsys.readouterr().err == tensorboard_curves.MISSING + "\n"
    assert write_curves(HISTORY, tmp_path / "tb") is None
    assert not (tmp_path / "tb").exists()
    shared.start_run(Config(tensorboard=False, out=str(tmp_path)))
    assert capsys.readouterr().err == ""
