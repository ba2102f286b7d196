"""Data for the report's embedding explorer: map points, nearest neighbours, thumbnails.

Everything the page needs is computed here, in Python, and embedded in the HTML as JSON, so
the page itself only draws: neighbours are found once in the full embedding space, and the
test images travel as one sprite sheet per dataset rather than one file per image.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from latentlab.config import from_dict
from latentlab.data import load_dataset

NEIGHBOURS = 8  # neighbours listed when a point is clicked
MAX_TILE = 48  # thumbnails larger than this (pixels a side) are shrunk to it
PNG_LIMIT = 1_000_000  # bytes; a larger PNG sprite sheet is re-encoded as JPEG
MAP_RESOLUTION = 10_000  # map coordinates are stored as integers 0..MAP_RESOLUTION


@torch.no_grad()
def nearest_neighbours(embeddings: np.ndarray | torch.Tensor, k: int = NEIGHBOURS
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of each row by Euclidean distance.

    embeddings: (N, D) -> (indices (N, k) int64, distances (N, k) float32), nearest first,
    a row never its own neighbour; k is cut to N - 1. Equal distances are listed in index
    order."""
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    chunk = max(1, 2**24 // n)  # rows per block: at most 128 MB of float64 distances
    indices, distances = [], []
    for start in range(0, n, chunk):
        block = torch.cdist(x[start: start + chunk], x)  # (B, N)
        rows = torch.arange(len(block))
        block[rows, rows + start] = math.inf  # never yourself
        values, order = torch.topk(block, k, dim=1, largest=False)
        order, by_index = order.sort(dim=1)  # index order first, then a stable sort by
        values, by_distance = values.gather(1, by_index).sort(dim=1, stable=True)  # distance
        indices.append(order.gather(1, by_distance))
        distances.append(values)
    return torch.cat(indices).numpy(), torch.cat(distances).float().numpy()


def sprite_sheet(images: torch.Tensor, max_tile: int = MAX_TILE) -> dict[str, Any]:
    """(N, C, H, W) uint8 images -> one image of tiles, row-major, as a data URI.

    Returns {"uri", "tile": [height, width], "columns", "count"}. Grey stays grey; the
    sheet is PNG, or JPEG when the PNG would exceed PNG_LIMIT bytes (colour photographs)."""
    n, c, h, w = images.shape
    scale = min(1.0, max_tile / max(h, w))
    if scale < 1:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        images = torch.nn.functional.interpolate(images.float(), size=(h, w), mode="bilinear",
                                                 antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
    columns = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    sheet = torch.zeros(rows * columns, c, h, w, dtype=torch.uint8)
    sheet[:n] = images
    # (rows*cols, C, H, W) -> (rows*H, cols*W, C)
    grid = sheet.view(rows, columns, c, h, w).permute(0, 3, 1, 4, 2).reshape(
        rows * h, columns * w, c).numpy()
    picture = Image.fromarray(grid[:, :, 0] if c == 1 else grid[:, :, :3])
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    mime = "image/png"
    if buffer.tell() > PNG_LIMIT:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        mime = "image/jpeg"
    uri = f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"
    return {"uri": uri, "tile": [h, w], "columns": columns, "count": n}


def quantise(points: np.ndarray) -> tuple[list[int], list[int]]:
    """(K, 2) map points -> integer x and y in 0..MAP_RESOLUTION, one scale for both axes."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return [], []
    low = points.min(0)
    span = float((points.max(0) - low).max()) or 1.0
    scaled = np.round((points - low) / span * MAP_RESOLUTION).astype(int)
    return scaled[:, 0].tolist(), scaled[:, 1].tolist()


@dataclass
class TestImages:
    """The test split a run was evaluated on, reloaded from its config."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,)
    class_names: list[str]


def reload_test_images(config: dict[str, Any]) -> TestImages | None:
    """The run's test images exactly as training saw them, or None if they cannot be had.

    Never downloads: a report must work offline, and thumbnails are only a nicety."""
    try:
        resolved = from_dict(config)
        with contextlib.redirect_stdout(io.StringIO()):
            data = load_dataset(resolved.dataset, resolved.data_dir, seed=resolved.test_seed,
                                download_missing=False)
            data = data.limit(resolved.train_limit, resolved.test_limit, seed=resolved.seed,
                              test_seed=resolved.test_seed)
    except Exception:  # any failure only costs the thumbnails
        return None
    return TestImages(data.test_images, data.test_labels, data.class_names)


def dataset_key(config: dict[str, Any]) -> tuple[Any, ...]:
    """Runs with equal keys were evaluated on the same test images."""
    return tuple(config.get(k) for k in ("dataset", "data_dir", "seed", "train_limit",
                                          "test_limit"))


def class_colours_hex(n: int) -> list[str]:
    from matplotlib.colors import to_hex

    from latentlab.plots import class_colours

    return [to_hex(c) for c in class_colours(n)]


def read_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """test_embeddings.npz -> (embeddings, labels, t-SNE points, the test indices they show);
    no points when the run saved no map."""
    with np.load(path) as saved:
        # a diverged model's NaNs must not break the page's JSON
        embeddings = np.nan_to_num(saved["embeddings"].astype(np.float64), nan=0.0,
                                   posinf=0.0, neginf=0.0)
        labels = saved["labels"].astype(np.int64)
        if "tsne" in saved and "tsne_index" in saved:
            points = np.nan_to_num(saved["tsne"].astype(np.float64))
            index = saved["tsne_index"].astype(np.int64)
        else:
            points, index = np.zeros((0, 2)), np.zeros(0, np.int64)
    return embeddings, labels, points, index


# a run's tiles: (sprite sheet number, test index -> tile number on it)
Tiles = tuple[int, dict[int, int]]


def build_galleries(wanted: dict[tuple[Any, ...], set[int]],
                    loaded: dict[tuple[Any, ...], TestImages | None],
                    ) -> tuple[list[dict[str, Any]], dict[tuple[Any, ...], Tiles]]:
    """One sprite sheet per test set of the test images some map shows; returns the sheets
    and, per dataset key, (sheet number, test index -> tile number)."""
    galleries: list[dict[str, Any]] = []
    tiles: dict[tuple[Any, ...], Tiles] = {}
    for key, needed in wanted.items():
        order = sorted(needed)
        test = loaded[key]
        assert test is not None
        galleries.append(sprite_sheet(test.images[torch.tensor(order)]))
        tiles[key] = (len(galleries) - 1, {i: t for t, i in enumerate(order)})
    return galleries, tiles


def model_entry(name: str, config: dict[str, Any], embeddings: np.ndarray, labels: np.ndarray,
                points: np.ndarray, index: np.ndarray, class_names: list[str] | None,
                tiles: Tiles | None, k: int) -> dict[str, Any]:
    """What the explorer draws for one run: its map, labels, neighbours and image tiles."""
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    names = class_names or [str(i) for i in range(n_classes)]
    # neighbours among the mapped points, measured in the full embedding space
    neighbour_index, neighbour_distance = nearest_neighbours(embeddings[index], k)
    x, y = quantise(points)
    model: dict[str, Any] = {
        "name": name, "dataset": str(config.get("dataset", "")),
        "testSet": json.dumps(dataset_key(config)),  # equal: same test images
        "dim": int(embeddings.shape[1]), "testCount": int(len(labels)),
        "classNames": names, "colours": class_colours_hex(len(names)),
        "x": x, "y": y, "label": labels[index].tolist(), "testIndex": index.tolist(),
        "k": int(neighbour_index.shape[1]),
        "neighbours": neighbour_index.reshape(-1).tolist(),
        "distances": [float(f"{d:.4g}") for d in neighbour_distance.reshape(-1)],
        "gallery": None, "tile": None,
    }
    if tiles is not None:
        gallery, tile_of = tiles
        model["gallery"] = gallery
        model["tile"] = [tile_of[i] for i in index.tolist()]
    return model


def explorer_data(runs: list[tuple[str, Path, dict[str, Any]]], k: int = NEIGHBOURS
                  ) -> dict[str, Any] | None:
    """Everything the explorer draws, for every run with test_embeddings.npz.

    runs: (name, run folder, resolved config). Returns None when no run has embeddings."""
    loaded: dict[tuple[Any, ...], TestImages | None] = {}  # dataset key -> its test images
    wanted: dict[tuple[Any, ...], set[int]] = {}  # dataset key -> test indices some map shows
    pending = []
    for name, folder, config in runs:
        path = folder / "test_embeddings.npz"
        if not path.is_file():
            continue
        embeddings, labels, points, index = read_embeddings(path)
        if len(index) == 0:
            continue
        key = dataset_key(config)
        if key not in loaded:
            loaded[key] = reload_test_images(config)
        test = loaded[key]
        matches = (test is not None and len(test.labels) == len(labels)
                   and bool((test.labels.numpy() == labels).all()))
        if matches:
            wanted.setdefault(key, set()).update(index.tolist())
        pending.append((name, config, embeddings, labels, points, index, key if matches
                        else None, test.class_names if matches and test else None))
    if not pending:
        return None
    galleries, tiles = build_galleries(wanted, loaded)
    models = [model_entry(name, config, embeddings, labels, points, index, class_names,
                          tiles[test_set] if test_set is not None else None, k)
              for name, config, embeddings, labels, points, index, test_set, class_names
              in pending]
    return {"models": models, "galleries": galleries}
