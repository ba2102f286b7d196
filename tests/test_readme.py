"""The README is a user's guide: short, and every default it quotes is the code's."""

from pathlib import Path

from latentlab.config import Config
from latentlab.data.splits import LARGE_TRAINING_SET, LARGE_VALIDATION, VALIDATION_FRACTION

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_fits_in_eight_kilobytes():
    assert len(README.encode()) <= 8 * 1024


def test_the_validation_split_it_describes_is_the_codes():
    text = " ".join(README.split())
    assert (f"({LARGE_VALIDATION:,} from {LARGE_TRAINING_SET:,} on, else "
            f"{VALIDATION_FRACTION:.0%})") in text


def test_the_main_job_and_the_default_dataset_are_the_codes():
    assert "pip install -e . && latentlab run --quick --dataset digits" in README
    assert f"`{Config().dataset}` (the default)" in README
