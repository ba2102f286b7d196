"""benchmarks/peers.py on tiny stand-in data: every task gives a row for latentlab and one for
its peer, scored in a plausible range; a rerun skips them; a missing peer ends in one line."""

import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datafiles import png_bytes, zip_folder

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
CLASSES = ("cat", "dog")
OFFICIAL, TRAIN, TEST = 10, 30, 5  # per class; every official image is the twin of one
# of the first OFFICIAL training images of the 'JPEG copy', as in the shared datasets
DECLARED = {"task", "system", "seed", "minutes", "score", "metric", "higher_is_better",
            "epochs", "images_per_second", "machine"}
PEERS = {"simclr": "lightly", "supcon": "pytorch-metric-learning", "autoencoder": "pythae",
         "vae": "pythae", "separator": "segmentation-models-pytorch"}


def image(number: int, label: int) -> np.ndarray:
    """A 32x32 image of its class's brightness with noise; the corner spells the number,
    so no two images are alike."""
    rng = np.random.default_rng(number)
    array = (rng.integers(0, 128, (32, 32, 3)) + 100 * label).astype(np.uint8)
    array[0, 0, :2] = [number % 256, number // 256]
    return array


def write_stand_ins(root: Path) -> dict[str, Path]:
    """The shared datasets in miniature and at their size: a 'JPEG copy' (train/ and test/),
    'official' images in a zip beside it and the twins list naming their copies."""
    data, unzipped = root / "data", root / "unzipped" / "official"
    lines = []
    for label, name in enumerate(CLASSES):
        for split, count in (("train", TRAIN), ("test", TEST)):
            (data / "copy" / split / name).mkdir(parents=True)
            for i in range(count):
                number = 1000 * label + (i if split == "train" else 500 + i)
                (data / "copy" / split / name / f"{i:04d}.png").write_bytes(
                    png_bytes(image(number, label)))
        (unzipped / name).mkdir(parents=True)
        for i in range(OFFICIAL):
            (unzipped / name / f"o{i:03d}.png").write_bytes(
                png_bytes(image(1000 * label + i, label)))
            lines.append(f"{name}/o{i:03d}.png train/{name}/{i:04d}.png")
    # the twins list and the copy beside the official zip, where the separator looks for them
    (data / "official-jpeg-twins.txt").write_text("\n".join(lines) + "\n")
    return {"dataset": data / "copy", "twins": data / "official-jpeg-twins.txt",
            "official": zip_folder(unzipped, data / "official.zip", prefix="official/")}


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT), run_name="peers_benchmark")


@pytest.fixture(scope="module")
def tiny(bench, tmp_path_factory):
    """Every task run once on the stand-ins, a second or so of training each."""
    for module in ("lightly", "pytorch_metric_learning", "pythae", "segmentation_models_pytorch"):
        # .ci/run installs them; the README's test command need not
        pytest.importorskip(module, reason="the peers extra: pip install -e '.[peers]'")
    root = tmp_path_factory.mktemp("peers")
    paths = write_stand_ins(root)
    argv = ["--tasks", *PEERS, "--minutes", "0.01", "--seeds", "1", "--test-limit", "12",
            "--dataset", str(paths["dataset"]), "--official", str(paths["official"]),
            "--twins", str(paths["twins"]), "--json", str(root / "peers.json"),
            "--out", str(root / "runs")]
    with pytest.MonkeyPatch.context() as patch:  # the module's own cache, not the user's
        patch.setenv("LATENTLAB_CACHE", str(root / "cache"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models run fastest on one thread
        try:
            code = bench["main"]([*argv, "--threads", "1"])
        finally:
            torch.set_num_threads(threads)
    assert code == 0
    return json.loads((root / "peers.json").read_text()), [*argv, "--threads", "1"], root


@pytest.mark.slow
@pytest.mark.parametrize("task", list(PEERS))
def test_each_task_gives_a_scored_row_for_latentlab_and_its_peer(tiny, task):
    rows = [r for r in tiny[0] if r["task"] == task]
    assert sorted(r["system"] for r in rows) == sorted(["latentlab", PEERS[task]])
    for row in rows:
        assert DECLARED <= row.keys()
        assert row["seed"] == 0 and row["minutes"] == 0.01 and row["machine"]
        assert row["epochs"] > 0 and row["images_per_second"] > 0
        score = row["score"]
        assert isinstance(score, float) and math.isfinite(score)
        if task in ("simclr", "supcon"):
            assert row["higher_is_better"] and 0 <= score <= 1
            assert 0 <= row["scores"]["real_linear_probe"] <= 1
        elif task == "autoencoder":
            assert row["higher_is_better"] and 0 < score < 100
            assert 0 <= row["scores"]["real_knn"] <= 1
        elif task == "vae":
            assert not row["higher_is_better"] and 0 < score < 16
        else:
            assert row["higher_is_better"] and 0 < score < 100
            assert row["scores"]["mixture_psnr"] > 0 and "shortcut_ratio" in row["scores"]


@pytest.mark.slow
def test_a_rerun_skips_the_rows_already_there(bench, tiny, monkeypatch, capsys):
    rows, argv, root = tiny
    before = (root / "peers.json").read_text()

    def must_not_run(*args):
        raise AssertionError("a finished run was run again")

    monkeypatch.setitem(bench["main"].__globals__, "run_one", must_not_run)
    assert bench["main"](argv) == 0
    assert (root / "peers.json").read_text() == before
    out = capsys.readouterr().out
    assert out.count("already in") == 2 * len(PEERS)
    assert "latentlab/peer" in out


def test_an_interrupted_benchmark_keeps_its_rows_and_runs_only_the_rest(bench, monkeypatch,
                                                                        tmp_path):
    for name in ("copy.zip", "official.zip", "official-jpeg-twins.txt"):
        (tmp_path / name).write_text("")
    argv = ["--tasks", "vae", "--seeds", "2", "--minutes", "3", "--dataset",
            str(tmp_path / "copy.zip"), "--official", str(tmp_path / "official.zip"),
            "--json", str(tmp_path / "peers.json")]
    runs: list[tuple[str, int]] = []
    stop_after = [3]

    def fake_run(task, system, seed, args):
        if len(runs) == stop_after[0]:
            raise KeyboardInterrupt
        runs.append((system, seed))
        return {"task": task, "system": system, "seed": seed, "minutes": args.minutes,
                "train_limit": None, "test_limit": None, "score": 4.0, "epochs": 1.0,
                "images_per_second": 1.0, "scores": {}}

    monkeypatch.setitem(bench["main"].__globals__, "run_one", fake_run)
    with pytest.raises(KeyboardInterrupt):
        bench["main"](argv)
    kept = json.loads((tmp_path / "peers.json").read_text())
    assert [(r["system"], r["seed"]) for r in kept] == [("latentlab", 0), ("pythae", 0),
                                                        ("latentlab", 1)]
    runs.clear()
    stop_after[0] = -1
    assert bench["main"](argv) == 0
    assert runs == [("pythae", 1)]
    assert bench["main"]([*argv, "--minutes", "4"]) == 0  # other settings: other runs
    assert len(runs) == 5 and len(json.loads((tmp_path / "peers.json").read_text())) == 8


def test_a_missing_peer_ends_in_one_line_saying_how_to_install_it(bench, monkeypatch, capsys,
                                                                  tmp_path):
    monkeypatch.setitem(sys.modules, "pythae", None)  # import pythae now fails
    code = bench["main"](["--tasks", "simclr", "vae", "--json", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--tasks vae" in err and "pythae" in err and "pip install -e '.[peers]'" in err
    assert not (tmp_path / "p.json").exists()


def test_the_ratio_says_above_one_where_latentlab_is_better(bench, capsys):
    def row(task, system, score):
        return {"task": task, "system": system, "seed": 0, "minutes": 1, "train_limit": None,
                "test_limit": None, "score": score, "epochs": 1.0, "images_per_second": 10.0,
                "scores": {}}

    bench["print_table"]([row("vae", "latentlab", 4.0), row("vae", "pythae", 5.0),
                          row("simclr", "latentlab", 0.6), row("simclr", "lightly", 0.3)])
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("vae") and "pythae" in line
                ).split()[7] == "1.250"  # bits/dim: peer / latentlab
    assert next(line for line in lines if line.startswith("simclr") and "lightly" in line
                ).split()[7] == "2.000"


def test_the_discretised_gaussian_is_a_distribution_over_the_256_levels(bench):
    likelihood = bench["discretised_gaussian_log_likelihood"]
    levels = torch.arange(256, dtype=torch.uint8)
    for mean, sigma in ((0.5, 0.1), (0.0, 0.01), (1.0, 0.3), (0.3, 0.001)):
        total = likelihood(levels, torch.full((256,), mean), sigma).exp().sum()
        assert abs(float(total) - 1) < 1e-9
    # far in a tail, where a plain difference of CDFs would give log(0)
    far = likelihood(torch.tensor([255], dtype=torch.uint8), torch.tensor([0.0]), 0.01)
    assert torch.isfinite(far).all() and far.item() < -1000
