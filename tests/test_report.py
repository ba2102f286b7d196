import json
import re
import shutil
from pathlib import Path

import pytest

from latentlab.cli import main
from latentlab.errors import UserError
from latentlab.report import (
    Run,
    better,
    config_table,
    describe_class_pairs,
    find_runs,
    generic_table,
    metrics_table,
    reading,
    write_report,
)


def run(name: str, test_count: int | None = 1000, num_classes: int | None = 10,
        **metrics: object) -> Run:
    return Run(name=name, folder=Path(name), metrics=dict(metrics), test_count=test_count,
               num_classes=num_classes)


def test_reading_names_the_best_model_and_the_gap() -> None:
    lines = reading([
        run("autoencoder", knn_accuracy=0.90, linear_probe_accuracy=0.85, silhouette=0.10),
        run("supcon", knn_accuracy=0.97, linear_probe_accuracy=0.96, silhouette=0.45),
        run("vae", knn_accuracy=0.80, linear_probe_accuracy=0.88, silhouette=0.05),
    ])
    assert lines == [
        "supcon separates the classes best: it leads on kNN accuracy, linear probe accuracy "
        "and silhouette.",
        "kNN accuracy (a vote of each test image's 20 nearest training images): supcon 97.0%, "
        "autoencoder 90.0%; last is vae (80.0%). supcon leads by 7.0 percentage points, more "
        "than the noise of 1,000 test images (about ±2.2 points).",
        "Linear probe accuracy (a linear classifier on the frozen embeddings): supcon 96.0%, "
        "vae 88.0%; last is autoencoder (85.0%). supcon leads by 8.0 percentage points, more "
        "than the noise of 1,000 test images (about ±2.4 points).",
        "Silhouette (1 means tight, well-separated classes; 0 means they overlap): supcon "
        "0.45, autoencoder 0.10; last is vae (0.05). supcon leads by 0.35, more than the noise "
        "of 1,000 test images (up to ±0.09).",
        "Guessing would be right 10.0% of the time.",
    ]


def test_reading_calls_a_small_gap_a_tie_and_names_disagreeing_measures() -> None:
    lines = reading([run("a", test_count=100, knn_accuracy=0.91, linear_probe_accuracy=0.70),
                     run("b", test_count=100, knn_accuracy=0.60, linear_probe_accuracy=0.85,
                         silhouette=0.2)])
    assert lines[0] == ("The measures disagree: a leads on kNN accuracy; b leads on linear "
                        "probe accuracy.")
    lines = reading([run("a", test_count=100, knn_accuracy=0.91, linear_probe_accuracy=0.80),
                     run("b", test_count=100, knn_accuracy=0.90, linear_probe_accuracy=0.85)])
    assert lines[0] == ("No model separates the classes measurably better: by kNN accuracy "
                        "and linear probe accuracy they are tied within the noise.")
    assert lines[1].endswith(": tied, the gap of 1.0 percentage points is within the noise "
                             "of 100 test images (about ±8.3 points).")
    assert not any("best" in line for line in lines)


def test_a_tie_is_never_best_and_the_reading_leads_with_measures_that_differ() -> None:
    # the main job's digits run: kNN tied, everything else favours the contrastive encoder
    lines = reading([
        run("autoencoder", test_count=359, knn_accuracy=0.944, linear_probe_accuracy=0.944,
            silhouette=-0.09, pair_auc=0.58),
        run("contrastive", test_count=359, knn_accuracy=0.944, linear_probe_accuracy=0.975,
            silhouette=0.35, pair_auc=0.94)])
    assert lines[0] == ("contrastive separates the classes best: it leads on linear probe "
                        "accuracy, silhouette and pair AUC; by kNN accuracy they are tied "
                        "within the noise.")
    assert [line.split(" (")[0] for line in lines[1:5]] == [
        "Linear probe accuracy", "Silhouette", "Pair AUC", "kNN accuracy"]
    assert "tied" in lines[4] and "best" not in lines[4] and "leads" not in lines[4]
    # unknown test-set sizes: a gap is reported, never weighed, and nothing is called best
    lines = reading([run("a", test_count=None, knn_accuracy=0.9),
                     run("b", test_count=None, knn_accuracy=0.8)])
    assert lines[0].endswith("the number of test images is unknown.")
    assert not any("best" in line for line in lines)


def test_reading_of_one_model_with_reconstructions_pixels_and_time_budget() -> None:
    lines = reading([run("autoencoder", knn_accuracy=0.9, linear_probe_accuracy=0.95,
                         raw_pixel_knn_accuracy=0.93, reconstruction_psnr=24.25,
                         stopped_by_time_budget=True, epochs=3)])
    assert lines == [
        "autoencoder puts 90.0% of test images in the right class by a vote of their 20 "
        "nearest training images (kNN accuracy), and a linear classifier on its embeddings "
        "gets 95.0%. Guessing would be right 10.0% of the time.",
        "kNN on raw pixels gets 93.0%; no embedding beats that baseline.",
        "autoencoder reconstructs test images at 24.2 dB PSNR (each 3 dB more halves the "
        "squared error).",
        "autoencoder was stopped by its time budget after 3 epochs; longer training may "
        "improve it.",
    ]


def test_reading_of_models_without_embeddings_uses_their_first_comparable_metric() -> None:
    lines = reading([run("separation/unet", separation_mse=0.01, separation_psnr=20.0),
                     run("separation/vae", separation_mse=0.02, separation_psnr=17.0)])
    assert lines == ["separation/unet scores best on separation mse: 0.01 against 0.02 for "
                     "separation/vae (lower is better)."]
    assert reading([]) == ["No results yet."]
    assert reading([run("x", epochs=2)]) == ["The runs report no metric that can be compared."]


def test_reading_of_a_separator_gives_its_gain_and_its_hardest_class_pair() -> None:
    table = {"classes": ["cat", "ship"], "psnr": [[18.0, 20.0], [20.0, 19.0]],
             "gain_over_mixture": [[2.5, 5.0], [5.0, 3.0]], "mixtures": [[3, 4], [4, 2]]}
    lines = reading([run("separation/unet", test_psnr=19.5, baseline_average_psnr=15.5,
                         test_psnr_by_class_pair=table)])
    assert lines == ["separation/unet separates the test mixtures at 19.50 dB PSNR, +4.00 dB "
                     "over returning the mixture (15.50 dB). By class pair, it gains least on "
                     "cat + cat (+2.50 dB over returning the mixture, 18.00 dB) and most on "
                     "cat + ship (+5.00 dB, 20.00 dB)."]


@pytest.mark.parametrize("name, direction", [
    ("knn_accuracy", 1), ("separation_psnr", 1), ("reconstruction_mse", -1), ("test_loss", -1),
    ("train_seconds", 0), ("mean_within_class_distance", 0), ("num_parameters", 0),
])
def test_metric_direction(name: str, direction: int) -> None:
    assert better(name) == direction


def test_metrics_table_bolds_the_best_value_of_comparable_rows() -> None:
    table = metrics_table([run("a", knn_accuracy=0.5, reconstruction_mse=0.2, epochs=3),
                           run("b", knn_accuracy=0.75, reconstruction_mse=0.1)])
    rows = dict(re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", table))
    assert rows["knn accuracy ↑"] == '<td>0.5</td><td class="best">0.75</td>'
    assert rows["reconstruction mse ↓"] == '<td>0.2</td><td class="best">0.1</td>'
    assert rows["epochs"] == "<td>3</td><td>—</td>"


def test_metrics_table_leaves_tables_and_curves_out_and_writes_small_dicts_in_a_line() -> None:
    table = metrics_table([run("unet", test_psnr=19.0, test_psnr_if_tiles_could_swap={
        "16": 19.5, "8": 20.0}, val_psnr_vs_time=[[1.0, 17.0]], test_psnr_by_class_pair={
        "classes": ["a"], "psnr": [[19.0]]})])
    rows = dict(re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", table))
    assert rows["test psnr if tiles could swap ↑"] == "<td>16: 19.5, 8: 20</td>"
    assert "test psnr ↑" in rows
    assert not any("vs time" in key or "class pair" in key for key in rows)


def test_config_table_marks_options_that_differ() -> None:
    a, b = run("a"), run("b")
    a.config, b.config = {"epochs": 2, "seed": 0}, {"epochs": 5, "seed": 0}
    table = config_table([a, b])
    assert '<tr class="differs"><th>epochs</th><td>2</td><td>5</td></tr>' in table
    assert "<tr><th>seed</th><td>0</td><td>0</td></tr>" in table


@pytest.mark.parametrize("contents, expected", [
    ([{"model": "a", "acc": 0.5}, {"model": "b"}], "<td>a</td><td>0.5</td>"),
    ({"a": {"acc": 0.5}, "b": {"acc": 0.25}}, "<tr><th>b</th><td>0.25</td></tr>"),
    ({"acc": 0.5, "name": "x"}, "<tr><th>acc</th><td>0.5</td></tr>"),
    ([1, 2], "<pre>[\n  1,\n  2\n]</pre>"),
])
def test_any_comparison_json_becomes_a_table(contents: object, expected: str) -> None:
    assert expected in generic_table(contents)


def test_the_comparison_of_latentlab_run_is_a_table_not_raw_json() -> None:
    # the shape experiments/comparison.py writes
    html = generic_table({"dataset": "digits", "models": {
        "autoencoder": {"knn_accuracy": 0.93}, "contrastive": {"knn_accuracy": 0.94}}})
    assert "<pre>" not in html
    assert "<tr><th>dataset</th><td>digits</td></tr>" in html
    assert "<tr><th>contrastive</th><td>0.94</td></tr>" in html


def test_report_of_a_results_folder_holds_everything_offline(digits_results: Path,
                                                             tmp_path: Path) -> None:
    results = shutil.copytree(digits_results, tmp_path / "results")
    path = write_report(results)
    assert path == results / "report.html"
    page = path.read_text()
    assert path.stat().st_size < 5_000_000
    # self-contained: every image inline, no script or style fetched from anywhere
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page
    pngs = sorted(results.rglob("*.png"))
    assert len(pngs) == 6 and page.count("<img src=\"data:image/png;base64,") == len(pngs)
    for name in ("autoencoder", "supcon", "separation/unet", "separation/vae",
                 "comparison.json", "What the numbers say", "Embedding explorer"):
        assert name in page, name
    data = json.loads(re.search(r'<script id="explorer-data" type="application/json">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert [m["name"] for m in data["models"]] == ["autoencoder", "supcon"]
    assert len(data["galleries"]) == 2  # supcon was tested on a 200-image subset
    assert [len(m["x"]) for m in data["models"]] == [359, 200]


def test_report_of_a_tied_knn_leads_with_what_differs_and_shows_each_figure_once(
        tmp_path: Path) -> None:
    # two runs as `latentlab run --quick --dataset digits` leaves them, made without training:
    # equal kNN accuracy; the autoencoder's pair AUC only in comparison.json
    from resultfiles import synthetic_run

    results = tmp_path / "results"
    scores = {"autoencoder": {"knn_accuracy": 0.944, "linear_probe_accuracy": 0.944,
                              "silhouette": -0.09},
              "contrastive": {"knn_accuracy": 0.944, "linear_probe_accuracy": 0.975,
                              "silhouette": 0.35, "pair_auc": 0.94}}
    for name, metrics in scores.items():
        folder = synthetic_run(results, name, n=359)
        (folder / "metrics.json").write_text(json.dumps(metrics))
    comparison = {"dataset": "digits", "models": {
        "autoencoder": {**scores["autoencoder"], "pair_auc": 0.58},
        "contrastive": scores["contrastive"]}}
    (results / "comparison.json").write_text(json.dumps(comparison))
    page = write_report(results).read_text()
    summary = re.findall(r"<li>(.*?)</li>",
                         re.search(r'<section id="reading">(.*?)</section>', page, re.S)[1])
    assert summary[0].startswith("contrastive separates the classes best: it leads on linear "
                                 "probe accuracy")
    assert summary[0].endswith("by kNN accuracy they are tied within the noise.")
    knn = next(line for line in summary if line.startswith("kNN accuracy"))
    assert ": tied, the gap of 0.0 percentage points" in knn
    # the figures of comparison.json join the metrics table instead of a second table
    assert "<h3>comparison.json</h3>" not in page
    rows = dict(re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", page))
    assert rows["pair auc ↑"] == '<td>0.58</td><td class="best">0.94</td>'
    # a comparison.json that says something else than the runs stays, as its own table
    (results / "comparison.json").write_text(json.dumps(
        {"models": {"autoencoder": {"knn_accuracy": 0.5}}}))
    assert "<h3>comparison.json</h3>" in write_report(results).read_text()


def test_report_finds_runs_in_nested_folders_and_a_single_run(digits_results: Path) -> None:
    assert [r.name for r in find_runs(digits_results)] == [
        "autoencoder", "supcon", "separation/unet", "separation/vae"]
    single = find_runs(digits_results / "autoencoder")
    assert [r.name for r in single] == ["autoencoder"]
    assert single[0].test_count == 359 and single[0].num_classes == 10


def test_report_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "missing")
    with pytest.raises(UserError, match="no results found"):
        write_report(tmp_path)


def test_report_command(digits_results: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    results = shutil.copytree(digits_results, tmp_path / "results")
    assert main(["report", str(results)]) == 0
    assert f"report written to {results / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "latentlab: error: results folder" in capsys.readouterr().err


def test_script_json_cannot_close_its_script_element() -> None:
    from latentlab.report import script_json

    text = script_json({"name": "</script><script>alert(1)</script>"})
    assert "</" not in text and json.loads(text) == {
        "name": "</script><script>alert(1)</script>"}


def test_class_pairs_are_described_by_the_least_and_the_most_gain():
    table = {"classes": ["cat", "dog", "ship"],
             "psnr": [[18.0, 17.5, 20.0], [17.5, 18.5, None], [20.0, None, 19.0]],
             "gain_over_mixture": [[3.0, 2.0, 5.5], [2.0, 3.1, None], [5.5, None, 2.5]]}
    assert describe_class_pairs(table) == (
        "it gains least on cat + dog (+2.00 dB over returning the mixture, 17.50 dB) and most "
        "on cat + ship (+5.50 dB, 20.00 dB)")
