"""benchmarks/separation.py run as a script: seeds, widths, an interrupted run, its help."""

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

from latentlab.experiments import separation

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def run_benchmark(*arguments, monkeypatch):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "separation.py"
    monkeypatch.setattr(sys, "argv", [str(script), *map(str, arguments)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(script), run_name="__main__")
    return exit.value.code


def test_benchmark_reports_a_stopped_run_in_one_line(tmp_path, monkeypatch, capsys):
    from latentlab.training import Interrupted

    def stopped(config):
        raise Interrupted(tmp_path / "checkpoint.pth")

    monkeypatch.setattr(separation, "run", stopped)
    code = run_benchmark("--models", "unet", "--protocols", "full", "--dataset", "digits",
                         "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 130
    assert "interrupted; progress saved in" in capsys.readouterr().err
    assert not (tmp_path / "separation.json").exists()


def test_benchmark_runs_every_seed_and_reports_mean_and_spread(tmp_path, monkeypatch, capsys):
    seen = []

    def finished(config):  # a run's metrics, its PSNR set by its seed
        seen.append((config.seed, config.out))
        return {"model": config.model, "protocol": config.protocol, "num_parameters": 10,
                "train_seconds": 1.0, "epochs": 1, "test_psnr": 17.0 + config.seed,
                "best_val_psnr": 16.0 + config.seed / 2,
                "test_ssim": 0.5, "separation_seconds": 0.1, "test_mixtures": 10,
                "baseline_average_psnr": 15.0, "baseline_average_ssim": 0.4,
                "val_psnr_vs_time": [[1.0, 17.0]], "device": "cpu"}

    monkeypatch.setattr(separation, "run", finished)
    code = run_benchmark("--models", "unet", "--protocols", "full", "--dataset", "digits",
                         "--seed", 1, "--seeds", 3, "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    assert [seed for seed, _ in seen] == [1, 2, 3]
    assert len({out for _, out in seen}) == 3  # each seed writes its own folder
    assert ("unet (full), 3 seeds: validation PSNR 17.000 ± 0.500 dB, test 19.000 ± 1.000 dB"
            in capsys.readouterr().out)
    saved = json.loads((tmp_path / "separation.json").read_text())
    assert saved["seeds"] == 3 and len(saved["runs"]) == 3


def test_shipped_recipe_trains_beside_the_jpeg_copy_with_the_windows_asked(tmp_path,
                                                                          monkeypatch):
    from latentlab.training import Interrupted

    seen = []

    def refuse(config):  # records the config, trains nothing
        seen.append(config)
        raise Interrupted(tmp_path / "checkpoint.pth")

    monkeypatch.setattr(separation, "run", refuse)
    code = run_benchmark("--models", "unet", "--protocols", "full", "--recipe", "shipped",
                         "--crop", 16, "--crop-until", 0.5, "--out", tmp_path,
                         monkeypatch=monkeypatch)
    assert code == 130
    [config] = seen
    assert config.dataset.endswith("cifar10-official-5k.zip")
    assert config.extra_train.endswith("cifar10-jpeg.zip") and config.oversample == 13
    assert (config.crop, config.crop_until) == (16, 0.5)
    assert "crop16until0.5" in config.out  # never overwrites the whole-image runs


def test_benchmark_times_each_width_and_refuses_a_bad_width_list(tmp_path, monkeypatch,
                                                                 capsys):
    code = run_benchmark("--time-widths", "4,16", "--models", "unet", "--dataset", "digits",
                         "--test-limit", 40, "--device", "cpu", "--threads", 1,
                         "--out", tmp_path, monkeypatch=monkeypatch)
    assert code == 0
    rows = json.loads((tmp_path / "separation-timing.json").read_text())["rows"]
    assert [(row["model"], row["width"]) for row in rows] == [("unet", 4), ("unet", 16)]
    assert rows[0]["num_parameters"] < rows[1]["num_parameters"]
    assert all(row["separation_seconds"] > 0 and row["test_mixtures"] == 40 * 39 // 2
               for row in rows)
    code = run_benchmark("--time-widths", "64,wide", "--dataset", "digits", "--out",
                         tmp_path / "bad", monkeypatch=monkeypatch)
    assert code == 2
    assert "--time-widths takes widths" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_benchmark_help_keeps_its_commands_on_separate_lines(monkeypatch, capsys):
    assert run_benchmark("--help", monkeypatch=monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    # a continued command ends in a backslash, and its next line is indented under it
    continued = [i for i, line in enumerate(lines) if line.endswith("\\")]
    assert continued
    assert all(lines[i + 1].startswith(" " * 8) for i in continued)
    assert not any(re.search(r"\S {5,}--", line) for line in lines)  # lines run together
