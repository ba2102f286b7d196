"""The `evaluate` command: score any saved model on the test split of any dataset.

Separators: PSNR, SSIM and the gain over returning the mixture, on fixed seeded mixtures of
the test images. Where a twins file lies beside the dataset (see data/twins.py), the same
mixtures are scored again on the test images' JPEG twins, and the shortcut ratio is
gain on real pixels / gain on their JPEG twins: near 1 for a separator that learned images,
near 0 for one that learned the compression. Embedding models: kNN and linear probe with a
training bank (--bank, default the dataset's own training split). VAEs: bits/dim as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentlab.checkpoint import load
from latentlab.config import from_dict
from latentlab.data import ImageData, load_dataset
from latentlab.data.folders import matching
from latentlab.data.mixtures import fixed_test_mixtures
from latentlab.data.splits import training_data
from latentlab.data.twins import read_twins, twin_of, twins_beside, twins_file, twins_of
from latentlab.errors import UserError
from latentlab.metrics.embeddings import embed_all, embedding_metrics
from latentlab.metrics.likelihood import elbo_metrics
from latentlab.metrics.separation import score_on_test_split
from latentlab.plots import plot_separation_examples


def evaluate_saved(path: str, dataset: str, data_dir: str | None = None,
                   bank: str | None = None, seed: int | None = None,
                   device: str = "cpu", test_limit: int | None = None,
                   examples: str | None = None) -> dict[str, Any]:
    """The scores of the model saved at path on the test split of dataset; for a separator,
    with `examples`, a PNG there of its first test mixtures separated."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist; give a <name>_model.pth file")
    model = load(path, device)
    if examples and model.kind != "separator":
        raise UserError(f"--examples draws separations, but {path} holds a "
                        f"{type(model).__name__}, not a separator")
    # a folder dataset's held-out test split depends on its seed: by default the one the
    # model's run used, so a model is scored on the images its own run held out
    seed = from_dict(model.config).test_seed if seed is None else seed
    data = load_dataset(dataset, data_dir, seed=seed).limit(None, test_limit, seed)
    if len(data.test_labels) < 2:
        raise UserError(f"{dataset} has {len(data.test_labels)} test images; scoring needs 2 "
                        "or more (a folder of <class>/<image> files holds out a fifth of each "
                        "class, rounded)")
    if tuple(model.image_shape) != data.image_shape:
        raise UserError(f"{path} was trained on {'x'.join(map(str, model.image_shape))} images, "
                        f"but {dataset} holds {'x'.join(map(str, data.image_shape))} images")
    row: dict[str, Any] = {"model_path": path, "model": type(model).__name__,
                           "dataset": dataset, "seed": seed,
                           "test_images": len(data.test_labels)}
    row["seen_in_training"] = seen_in_training(model.config, dataset, data, data_dir)
    if model.kind == "separator":
        test = fixed_test_mixtures(data.test_images)
        row.update(score_on_test_split(model, data, test, dataset))
        if examples:
            plot_separation_examples(
                model, test, Path(examples),
                f"{Path(path).name} on {Path(dataset.removeprefix('folder:')).name}: test PSNR "
                f"{row['test_psnr']:.2f} dB (returning the mixture: "
                f"{row['baseline_average_psnr']:.2f} dB)")
    else:
        row.update(score_embeddings(model, data, bank, data_dir, seed))
    return row


def seen_in_training(config: dict[str, Any], dataset: str, data: ImageData,
                     data_dir: str | None) -> int | None:
    """How many of data's test images the model's run trained on, themselves or their twins;
    None where that cannot be told (the run's datasets are not here, or not folders)."""
    if not config or not data.test_names:
        return None
    try:
        trained = training_data(from_dict(config))
    except UserError:
        return None
    if not trained.train_names:
        return None
    # runs from before the validation split trained on every training image
    listed = set(trained.train_names + (trained.val_names if "validation" not in config else []))
    seen = matching(data.test_names, listed)
    twins_path = twins_file(dataset)
    if twins_path is not None:
        twins = read_twins(twins_path)
        twin_names = [twin_of(name, twins) or "" for name in data.test_names]
        seen |= matching(twin_names, listed)
    return int(seen.sum())


def score_embeddings(model: Any, data: ImageData, bank: str | None, data_dir: str | None,
                     seed: int) -> dict[str, Any]:
    """kNN and linear probe of the test split against a training bank; VAEs add bits/dim."""
    bank_data = data if bank is None else load_dataset(bank, data_dir, seed=seed)
    if bank_data.class_names != data.class_names:
        raise UserError(f"--bank {bank} has classes {bank_data.class_names}, but the dataset "
                        f"has {data.class_names}; they must match")
    keep = bank_without_twins(bank_data, data.test_names, [data.name, bank])
    row = embedding_metrics(embed_all(model, bank_data.train_images[keep]),
                            bank_data.train_labels[keep], embed_all(model, data.test_images),
                            data.test_labels, seed=seed)
    row["bank"] = bank or "the dataset's training split"
    row["bank_twins_excluded"] = int((~keep).sum())
    if model.kind == "vae":
        row.update(elbo_metrics(model, data.test_images, seed))
    return row


def bank_without_twins(bank: ImageData, scored: list[str], specs: list[str | None]) -> Tensor:
    """(N,) bool: the bank's training images that are neither a scored image nor its twin
    (by the twins files beside the datasets), so no test image finds itself in the bank."""
    twins = twins_beside(specs)
    unwanted = set(scored) | set(twins_of(scored, twins))
    if not bank.train_names or not unwanted:
        return torch.ones(len(bank.train_labels), dtype=torch.bool)
    return ~matching(bank.train_names, unwanted)


def describe(row: dict[str, Any]) -> str:
    """The scores of evaluate_saved in a few lines of plain words."""
    lines = [f"{row['model']} from {row['model_path']} on the {row['test_images']:,} test "
             f"images of {row['dataset']} (seed {row['seed']})"]
    seen = row.get("seen_in_training")
    lines.append("images seen in training, themselves or their twins: "
                 + ("cannot tell (the run's datasets are not here)" if seen is None
                    else f"{seen:,}" + ("" if seen == 0 else
                                         " -- these scores flatter the model")))
    if "test_psnr" in row:
        lines.append(f"real pixels: PSNR {row['test_psnr']:.2f} dB, SSIM {row['test_ssim']:.3f} "
                     f"over {row['test_mixtures']:,} mixtures; returning the mixture "
                     f"{row['baseline_average_psnr']:.2f} dB (gain "
                     f"{row['test_psnr'] - row['baseline_average_psnr']:+.2f} dB)")
        if "jpeg_twins" in row:
            twins = row["jpeg_twins"]
            lines.append(f"their JPEG twins: PSNR {twins['test_psnr']:.2f} dB, SSIM "
                         f"{twins['test_ssim']:.3f}; returning the mixture "
                         f"{twins['baseline_average_psnr']:.2f} dB (gain "
                         f"{twins['gain_over_mixture']:+.2f} dB)")
            lines.append(f"shortcut ratio (gain on real pixels / gain on JPEG twins): "
                         f"{row['shortcut_ratio']:.2f}")
    if "knn_accuracy" in row:
        lines.append(f"kNN accuracy {row['knn_accuracy']:.3f}, linear probe "
                     f"{row['linear_probe_accuracy']:.3f} (bank: {row['bank']}, "
                     f"{row['bank_twins_excluded']:,} twins of the scored images left out)")
    if "test_bits_per_dim" in row:
        lines.append(f"bits/dim {row['test_bits_per_dim']:.3f}")
    return "\n".join(lines)
