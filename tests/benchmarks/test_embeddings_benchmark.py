"""benchmarks/embeddings.py: the table reports what validation chose."""

import runpy
from pathlib import Path

import pytest

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


def test_set_options_are_typed_like_the_config(bench):
    assert bench["parse_set"](["supcon.views=1", "simclr.temperature=0.5"]) == {
        "supcon": {"views": 1}, "simclr": {"temperature": 0.5}}
    with pytest.raises(SystemExit, match="METHOD.OPTION=VALUE"):
        bench["parse_set"](["views=1"])
