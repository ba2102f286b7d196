"""benchmarks/embeddings.py: the table reports what validation chose; --save writes an
encoder that loads."""

import runpy
import sys
from pathlib import Path

import pytest
import torch

import latentlab
from latentlab.checkpoint import read_checkpoint
from latentlab.cli import main
from latentlab.config import Config
from latentlab.evaluate import evaluate_saved

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "embeddings.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT), run_name="embeddings_benchmark")


def run(seed, val, val_flips, test, test_flips):
    return {"method": "supcon", "dataset": "fashion-mnist", "minutes": 30, "set": {},
            "seed": seed, "epochs": 40, "images_per_second": 1300.0, "val_knn": val,
            "val_knn_flips": val_flips, "test_knn": test, "test_knn_flips": test_flips}


@pytest.mark.parametrize("flips", [True, False])
def test_table_reports_test_knn_with_or_without_flips_as_validation_prefers(
        bench, capsys, flips):
    better, worse = (0.92, 0.90) if flips else (0.90, 0.92)
    bench["print_table"]([run(0, worse, better, 0.801, 0.811),
                          run(1, worse, better, 0.803, 0.813)])
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("supcon"))
    assert row.split()[6] == ("yes" if flips else "no")
    assert ("0.812 ± 0.001" if flips else "0.802 ± 0.001") in row
    assert ("0.802" if flips else "0.812") not in row
    assert row.rstrip().endswith(">= 0.94")


def test_validation_only_rows_give_the_kept_epoch_and_its_score_apart(bench, capsys):
    quick = [{**run(seed, 0.0, 0.0, 0.0, 0.0), "validation_only": True, "best_epoch": epoch,
              "best_val_knn": score} for seed, epoch, score in ((0, 9, 0.70), (1, 11, 0.72))]
    for row in quick:  # nothing but the kept epoch's validation kNN was scored
        for key in ("val_knn", "val_knn_flips", "test_knn", "test_knn_flips"):
            del row[key]
    bench["print_table"]([*quick, run(0, 0.90, 0.92, 0.801, 0.811)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("supcon")]
    assert len(rows) == 2  # a validation-only cell is never averaged with a fully scored one
    assert rows[0].split()[6:9] == ["no", "10.0", "0.710"] and "± 0.014" in rows[0]
    assert rows[1].split()[6:8] == ["yes", "40.0"]


def test_table_names_the_settings_a_cell_overrides(bench, capsys):
    shaped = {**run(0, 0.90, 0.92, 0.801, 0.811), "set": {"encoder": "airbench", "width": 32}}
    bench["print_table"]([shaped, run(0, 0.90, 0.92, 0.801, 0.811)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("supcon")]
    assert "encoder=airbench width=32" in rows[0]
    assert "encoder=" not in rows[1]


@pytest.mark.parametrize("option", [["--save", "x.pth", "--seeds", "1", "--methods", "supcon",
                                     "--datasets", "cifar10"], ["--figures", "docs"]])
def test_validation_only_refuses_what_needs_every_score(bench, monkeypatch, capsys, option):
    monkeypatch.setattr(sys, "argv", ["embeddings.py", "--validation-only", *option])
    with pytest.raises(SystemExit) as stop:
        bench["main"]()
    assert stop.value.code == 2
    assert "leave out --validation-only" in capsys.readouterr().err


def test_set_options_are_typed_like_the_config(bench):
    assert bench["parse_set"](["supcon.views=1", "simclr.temperature=0.5"]) == {
        "supcon": {"views": 1}, "simclr": {"temperature": 0.5}}
    with pytest.raises(SystemExit, match="METHOD.OPTION=VALUE"):
        bench["parse_set"](["views=1"])


def test_figures_say_what_is_missing(bench, monkeypatch, tmp_path):
    args = bench["argparse"].Namespace(methods=["supcon"], minutes=30, set={},
                                        validation_only=False)
    script = bench["draw_figures"].__globals__  # run_path returns a copy of these
    monkeypatch.setitem(script, "official_images", lambda: None)
    with pytest.raises(SystemExit, match="--figures needs the real-pixel images"):
        bench["draw_figures"]([], args, tmp_path)
    images = (bench["torch"].zeros(2, 3, 32, 32), bench["torch"].zeros(2), ["a", "b"])
    monkeypatch.setitem(script, "official_images", lambda: images)
    with pytest.raises(SystemExit, match="no CIFAR-10 run of these methods"):
        bench["draw_figures"]([run(0, 0.9, 0.91, 0.8, 0.81)], args, tmp_path)  # Fashion-MNIST
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("flips", [True, False])
def test_save_writes_a_loadable_encoder_with_flips_as_validation_chose(
        bench, tmp_path, monkeypatch, flips):
    assert main(["train", "supcon", "--dataset", "digits", "--train-limit", "128",
                 "--test-limit", "64", "--tsne-points", "20", "--batch-size", "64",
                 "--epochs", "1", "--out", str(tmp_path)]) == 0
    config = Config(experiment="supcon", dataset="digits", out=str(tmp_path))
    monkeypatch.setitem(bench["save"].__globals__, "config_of", lambda *_: config)
    run = {"method": "supcon", "dataset": "cifar10", "seed": 0, "val_knn": 0.5,
           "val_knn_flips": 0.6 if flips else 0.4, "real_knn": 0.55,
           "machine": bench["machine"]()}  # torch's version string must load safely too
    bench["save"](run, None, str(tmp_path / "saved.pth"))
    saved = read_checkpoint(tmp_path / "saved.pth", "model")
    assert saved["metrics"]["real_knn"] == 0.55 and "code_version" in saved["metrics"]
    assert saved["metrics"]["knn_accuracy"] > 0  # the run's own scores stay beside them
    model = latentlab.load(tmp_path / "saved.pth")
    assert model.mirror is flips
    z = model.embed(torch.rand(3, 1, 8, 8))
    assert z.shape == (3, model.hparams()["latent_dim"])
    row = evaluate_saved(str(tmp_path / "saved.pth"), "digits", test_limit=64)
    assert 0 <= row["knn_accuracy"] <= 1


def test_save_refuses_more_than_one_run(monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--methods", "supcon", "--seeds", "2",
                                      "--save", "x.pth"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert stopped.value.code == 2
