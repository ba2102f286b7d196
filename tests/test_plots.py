"""Figure helpers in latentlab.plots."""

import numpy as np
import torch
from PIL import Image

from latentlab.plots import plot_embedding_maps, wrap_name


def test_long_model_names_break_at_their_last_hyphen():
    assert wrap_name("two-decoder-vae") == "two-decoder-\nvae"
    assert wrap_name("resunet") == "resunet"
    assert wrap_name("unet") == "unet"


def test_embedding_maps_fill_rows_of_the_columns_asked_for(tmp_path):
    points = np.random.default_rng(0).normal(size=(20, 2))
    labels = torch.arange(20) % 2
    maps = [(points, labels, f"model {i}") for i in range(3)]
    plot_embedding_maps(maps, ["a", "b"], tmp_path / "row.png", "one row")
    plot_embedding_maps(maps, ["a", "b"], tmp_path / "grid.png", "two columns", columns=2)
    row, grid = (Image.open(tmp_path / f"{name}.png").size for name in ("row", "grid"))
    assert row[0] > row[1]  # three panels side by side: wide
    assert grid[0] < row[0] and grid[1] > 1.6 * row[1]  # two rows of two: narrower, taller
