import json
from pathlib import Path

import pytest

from latentlab import tensorboard_curves
from latentlab.cli import main
from latentlab.config import coerce
from latentlab.errors import UserError
from latentlab.tensorboard_curves import scalar_tags, write_curves

HISTORY = [{"epoch": 1, "seconds": 2.0, "train_loss": 0.5, "test_loss": 0.75,
            "train_knn_accuracy": 0.25},
           {"epoch": 2, "seconds": 1.5, "train_loss": 0.25, "test_loss": float("nan")}]


def test_scalar_tags_group_train_and_test_of_one_quantity() -> None:
    assert scalar_tags(HISTORY[0]) == {"seconds": 2.0, "loss/train": 0.5, "loss/test": 0.75,
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
    assert sorted(events.Tags()["scalars"]) == ["knn_accuracy/train", "loss/test", "loss/train",
                                                "seconds"]
    assert [(e.step, e.value) for e in events.Scalars("loss/train")] == [(1, 0.5), (2, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("loss/test")] == [(1, 0.75)]


def test_train_with_tensorboard_writes_events_or_says_why_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    has_tensorboard = tensorboard_curves.available()
    args = ["train", "autoencoder", "--dataset", "digits", "--epochs", "1", "--train-limit",
            "100", "--test-limit", "30", "--tsne-points", "30", "--tensorboard"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    run_dir = tmp_path / "a" / "autoencoder"
    assert json.loads((run_dir / "config.json").read_text())["config"]["tensorboard"] is True
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == (1 if has_tensorboard else 0)
    # without the package: one clear message, and training still finishes
    monkeypatch.setattr(tensorboard_curves, "available", lambda: False)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err.count("--tensorboard needs the tensorboard package") == 1
    assert (tmp_path / "b" / "autoencoder" / "history.json").is_file()
    assert not (tmp_path / "b" / "autoencoder" / "tensorboard").exists()
