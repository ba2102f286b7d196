"""Figures (matplotlib, no display needed), written atomically as PNG."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # in Jupyter, keep the inline backend: notebooks show plots
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from latentlab.files import atomic_write  # noqa: E402
from latentlab.metrics.images import align_to_sources  # noqa: E402


def save_figure(figure: Figure, path: str | Path) -> None:
    try:
        with atomic_write(path) as tmp:
            figure.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_losses(history: Sequence[dict[str, float]], path: str | Path, title: str,
                keys: Sequence[str] = ("loss",)) -> None:
    """Train and validation curves per epoch, one panel per logged quantity."""
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes[0], keys):
        for split, label, style in (("train", "train", "-o"), ("val", "validation", "--s")):
            values = [h.get(f"{split}_{key}", np.nan) for h in history]
            ax.plot(epochs, values, style, label=label, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(title)
    save_figure(figure, path)


def scatter_classes(ax: plt.Axes, points: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str], legend: bool = True) -> None:
    for index, (name, colour) in enumerate(zip(class_names, class_colours(len(class_names)))):
        mask = labels == index
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=6, color=colour, label=name,
                       alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5),
                  frameon=False)


def plot_embedding_map(points: np.ndarray, labels: Tensor, class_names: Sequence[str],
                       path: str | Path, title: str) -> None:
    """A 2-D map (t-SNE) of test embeddings coloured by class, with a legend of class names."""
    figure, ax = plt.subplots(figsize=(7, 6))
    scatter_classes(ax, points, labels.numpy(), class_names)
    ax.set_title(title)
    save_figure(figure, path)


def image_grid(rows: Sequence[Tensor], pad: int = 2) -> np.ndarray:
    """Rows of (N, C, H, W) images in [0, 1] -> one (H', W', 3) array."""
    size = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.interpolate(r.float(), size=(size, size), mode="nearest")
            if r.shape[-1] != size else r.float() for r in rows]
    rows = [r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]
    grid = make_grid(torch.cat(rows), nrow=len(rows[0]), padding=pad, pad_value=1.0)
    return grid.permute(1, 2, 0).clamp(0, 1).numpy()


def plot_image_rows(rows: Sequence[Tensor], row_names: Sequence[str], path: str | Path,
                    title: str) -> None:
    """Rows of images, each labelled on the left (originals above reconstructions, ...)."""
    n = len(rows[0])
    figure, ax = plt.subplots(figsize=(max(6, n * 0.75), 0.8 * len(rows) + 0.8))
    ax.imshow(image_grid(rows), interpolation="nearest")
    height = ax.get_ylim()[0] / len(rows)
    ax.set_yticks([height * (i + 0.5) for i in range(len(rows))], row_names)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    save_figure(figure, path)


def plot_image_strip(images: Sequence[Tensor], names: Sequence[str], path: str | Path,
                     title: str) -> None:
    """Single (1, C, H, W) or (C, H, W) images side by side, each named above (a mixture
    and its separated outputs)."""
    figure, axes = plt.subplots(1, len(images), figsize=(1.9 * len(images), 2.5),
                                squeeze=False, layout="constrained")
    for ax, image, name in zip(axes[0], images, names):
        pixels = image.detach().float().cpu().reshape(-1, *image.shape[-2:]).clamp(0, 1)
        ax.imshow(pixels.expand(3, -1, -1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    figure.suptitle(title, fontsize=11)
    save_figure(figure, path)


def wrap_name(name: str, width: int = 8) -> str:
    """'two-decoder-vae' -> 'two-decoder-\\nvae': long names break at their last hyphen, so
    the labels of neighbouring bars never overlap."""
    head, hyphen, tail = name.rpartition("-")
    return f"{head}{hyphen}\n{tail}" if len(name) > width and hyphen else name


def plot_separation_comparison(rows: Sequence[dict], path: str | Path) -> None:
    """Test PSNR and SSIM of each separator run, with the mixture baseline marked."""
    names = [f"{wrap_name(r['model'])}\n({r.get('protocol')})" for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(max(7, 1.6 * len(rows) + 3), 3.8),
                                layout="constrained")
    for ax, key, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        values = [float(r.get(f"test_{key}") or np.nan) for r in rows]
        bars = ax.bar(names, values, color=class_colours(len(rows)))
        ax.bar_label(bars, fmt="%.3f" if key == "ssim" else "%.2f", fontsize=8)
        baselines = [float(r.get(f"baseline_average_{key}") or np.nan) for r in rows]
        if not np.isnan(baselines).all():
            ax.axhline(float(np.nanmean(baselines)), color="k", ls="--", lw=1,
                       label="returning the mixture")
            ax.legend(fontsize=8, loc="lower right")
        # start the axis under the lowest bar, so small gaps between models show
        margin = 2.0 if key == "psnr" else 0.1
        ax.set_ylim(bottom=max(0.0, float(np.nanmin([*values, *baselines])) - margin))
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Separating two images from their average (test mixtures, best assignment)")
    save_figure(figure, path)


def plot_class_pair_psnr(table: dict, path: str | Path, title: str) -> None:
    """Heat maps of `test_psnr_by_class_pair`: the mean PSNR of each unordered pair of classes
    and its gain over returning the mixture (lower triangles), each cell written in, the
    lowest values darkest."""
    names = table["classes"]
    size = 1.6 + 0.5 * len(names)
    figure, axes = plt.subplots(1, 2, figsize=(2 * size, size + 0.5), layout="constrained")
    for ax, key, label in ((axes[0], "psnr", "test PSNR (dB)"),
                           (axes[1], "gain_over_mixture", "gain over returning the mixture (dB)")):
        values = np.array([[np.nan if v is None else v for v in row] for row in table[key]],
                          dtype=float)
        values[np.triu_indices(len(names), 1)] = np.nan  # symmetric: one triangle says it all
        shown = ax.imshow(values, cmap="magma", interpolation="nearest")
        # the colour bar sits in the empty upper triangle
        figure.colorbar(shown, cax=ax.inset_axes((0.74, 0.5, 0.035, 0.45)))
        if len(names) <= 20:  # beyond that the numbers no longer fit their cells
            low, high = np.nanmin(values), np.nanmax(values)
            for (i, j), value in np.ndenumerate(values):
                if not np.isnan(value):
                    dark = value < low + 0.6 * (high - low)  # light text on the dark cells
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(label, fontsize=10)
    figure.suptitle(title, fontsize=11)
    save_figure(figure, path)


def save_image(image: Tensor, path: str | Path) -> None:
    """One (C, H, W) image in [0, 1] -> an 8-bit PNG file, written atomically."""
    from PIL import Image

    path = Path(path)
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    array = pixels.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    with atomic_write(path) as tmp:
        picture.save(tmp, format="png")


def plot_distance_histograms(panels: Sequence[dict], path: str | Path, title: str) -> None:
    """Histograms of positive-pair (same class) and negative-pair (different class) distances,
    one panel per dict: {"title", "positive", "negative", "xlabel", optional "margin"}."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        positive = np.asarray(panel["positive"], dtype=float)
        negative = np.asarray(panel["negative"], dtype=float)
        both = np.concatenate([positive, negative])
        bins = np.linspace(both.min(), both.max(), 50) if both.size and np.ptp(both) > 0 else 20
        ax.hist(positive, bins=bins, alpha=0.6, density=True, color="tab:blue",
                label=f"same class (mean {positive.mean():.2f})")
        ax.hist(negative, bins=bins, alpha=0.6, density=True, color="tab:red",
                label=f"different class (mean {negative.mean():.2f})")
        if panel.get("margin") is not None:
            ax.axvline(panel["margin"], color="black", linestyle="--",
                       label=f"margin {panel['margin']:g}")
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel("density")
        ax.set_title(panel["title"])
        ax.legend(fontsize=8)
    figure.suptitle(title, y=1.03)  # above the panel titles
    save_figure(figure, path)


def plot_embedding_maps(maps: Sequence[tuple[np.ndarray, Tensor, str]],
                        class_names: Sequence[str], path: str | Path, title: str,
                        columns: int = 0) -> None:
    """2-D maps side by side, each (points (N, 2), labels (N,), title), one colour per class
    shared by all panels, in rows of `columns` panels (0: one row); the legend ends row 1."""
    columns = columns or len(maps)
    rows = -(-len(maps) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns + 1.5, 5.5 * rows),
                                squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for i, (ax, (points, labels, name)) in enumerate(zip(axes.flat, maps)):
        scatter_classes(ax, points, labels.numpy(), class_names,
                        legend=i == min(columns, len(maps)) - 1)
        ax.set_title(name)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_separation_examples(model: Any, test: Any, path: Path, title: str,
                             examples: int = 10) -> None:
    """Rows of the first test mixtures, their two sources and the separator's two outputs
    (in the sources' order)."""
    shown = slice(0, min(examples, len(test)))
    pair = test.sources(shown).cpu().float() / 255
    x1, x2 = pair[:, 0], pair[:, 1]
    m = test.mixtures(shown).cpu()
    estimate_1, estimate_2 = model.separate(m)
    first, second = align_to_sources(estimate_1.cpu(), estimate_2.cpu(), x1, x2)
    plot_image_rows([m, x1, x2, first, second], ["mixture", "x1", "x2", "x1_hat", "x2_hat"],
                    path, title)


@torch.no_grad()
def interpolate(model: Any, first: Tensor, second: Tensor, steps: int = 8) -> Tensor:
    """Decode the straight line between two images' latents: (steps, C, h, w) in [0, 1]."""
    ends = model.embed(torch.stack([first, second]))  # (2, D)
    t = torch.linspace(0, 1, steps, device=ends.device)[:, None]
    return model.decode((1 - t) * ends[0] + t * ends[1]).cpu()


def plot_interpolations(vae: Any, plain: Any, data: Any,
                        path: Path, pairs: int = 4) -> None:
    """Rows of VAE and autoencoder interpolations between test images of different classes."""
    first_of_class = {int(c): int((data.test_labels == c).nonzero()[0])
                      for c in data.test_labels.unique()}
    classes = sorted(first_of_class)
    rows, names = [], []
    for i in range(min(pairs, len(classes))):
        a, b = classes[i], classes[(i + 1) % len(classes)]
        first, second = data.test_images[first_of_class[a]], data.test_images[first_of_class[b]]
        label = f"{data.class_names[a]} -> {data.class_names[b]}"
        rows += [interpolate(vae, first, second), interpolate(plain, first, second)]
        names += [f"VAE {label}", f"autoencoder {label}"]
    plot_image_rows(rows, names, path, "Straight lines between two test images in latent "
                    "space, decoded (VAE: posterior means)")
