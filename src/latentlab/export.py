"""`latentlab embed`: embeddings of any images as .npy, and as the two TSV files that the
TensorBoard Embedding Projector (projector.tensorflow.org, "Load") reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentlab.checkpoint import load
from latentlab.data import load_dataset
from latentlab.data.folders import IMAGE_SUFFIXES, decode_image, folder_entries, visible
from latentlab.errors import UserError
from latentlab.files import atomic_write, write_json_atomic, write_text_atomic

SPLITS = ("test", "train", "all")


@dataclass
class Images:
    """Images to embed, with a label (-1 when unknown) and a name per image."""

    images: list[Tensor]  # each (C, H, W) uint8; sizes may differ
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    names: list[str]  # file name or split:index, one per image


def read_image_files(path: Path) -> Images:
    """One image file, or every image in a directory or .zip (sorted by name). An image's
    class is its parent folder's name when images lie in sub-folders; otherwise unknown."""
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        names, read = [path.name], (lambda _: path.read_bytes())
    else:
        names, read = folder_entries(path)
        names = sorted(n for n in names if visible(n) and Path(n).suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise UserError(f"no images found in {path}; give an image, a folder or .zip of images, "
                        "or a dataset name such as digits")
    folders = [Path(n).parent.name for n in names]
    class_names = sorted({f for f in folders if f}) if all(folders) else []
    labels = np.array([class_names.index(f) if class_names else -1 for f in folders], np.int64)
    images = [torch.from_numpy(np.array(decode_image(read(n), f"{path}: {n}"))).permute(2, 0, 1)
              for n in names]
    return Images(images, labels, class_names, names)


def read_dataset(name: str, split: str, limit: int | None, data_dir: str | None) -> Images:
    data = load_dataset(name, data_dir)
    parts = {"train": [("train", data.train_images, data.train_labels)],
             "test": [("test", data.test_images, data.test_labels)]}
    chosen = parts["train"] + parts["test"] if split == "all" else parts[split]
    images, labels, names = [], [], []
    for split_name, split_images, split_labels in chosen:
        images += list(split_images)
        labels += split_labels.tolist()
        names += [f"{split_name}:{i}" for i in range(len(split_labels))]
    if limit is not None:
        images, labels, names = images[:limit], labels[:limit], names[:limit]
    return Images(images, np.array(labels, np.int64), list(data.class_names), names)


def read_images(source: str, split: str = "test", limit: int | None = None,
                data_dir: str | None = None) -> Images:
    """An existing path is read as image files; anything else as a dataset name."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be a positive whole number, not {limit}")
    path = Path(source).expanduser()
    if path.exists() and not source.startswith("folder:"):
        found = read_image_files(path)
        if limit is not None:
            found = Images(found.images[:limit], found.labels[:limit], found.class_names,
                           found.names[:limit])
        return found
    return read_dataset(source, split, limit, data_dir)


@torch.no_grad()
def embed_images(model: Any, images: list[Tensor], batch_size: int = 500) -> np.ndarray:
    """Embed images of any size: consecutive images of one shape go through in batches.

    images: list of (C, H, W) uint8 -> (N, D) float32."""
    out: list[Tensor] = []
    start = 0
    while start < len(images):
        end = start + 1
        while (end < len(images) and end - start < batch_size
               and images[end].shape == images[start].shape):
            end += 1
        out.append(model.embed(torch.stack(images[start:end])).float().cpu())
        start = end
    return torch.cat(out).numpy()


def tsv_field(text: str) -> str:
    """Tabs and line breaks would break the TSV; spaces are safe."""
    return " ".join(str(text).split())


def write_projector_tsv(embeddings: np.ndarray, labels: np.ndarray, class_names: list[str],
                        names: list[str], folder: Path) -> tuple[Path, Path]:
    """vectors.tsv (one row of tab-separated numbers per image, no header) and metadata.tsv
    (a header, then label, class and name per image), as the Embedding Projector reads them.

    Numbers are written with %.9g, enough digits to read back the same float32 values."""
    vectors = folder / "vectors.tsv"
    metadata = folder / "metadata.tsv"
    with atomic_write(vectors) as tmp:
        np.savetxt(tmp, np.asarray(embeddings, dtype=np.float32), fmt="%.9g", delimiter="\t")
    rows = ["label\tclass\tname"]
    for label, name in zip(labels.tolist(), names):
        kind = class_names[label] if 0 <= label < len(class_names) else ""
        rows.append(f"{label}\t{tsv_field(kind)}\t{tsv_field(name)}")
    write_text_atomic("\n".join(rows) + "\n", metadata)
    return vectors, metadata


def read_projector_tsv(folder: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """(embeddings (N, D) float32, metadata rows as dicts keyed by the header)."""
    vectors = np.loadtxt(folder / "vectors.tsv", dtype=np.float32, delimiter="\t", ndmin=2)
    lines = (folder / "metadata.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return vectors, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def export_embeddings(checkpoint: str | Path, source: str, out: str | Path, split: str = "test",
                      limit: int | None = None, data_dir: str | None = None,
                      device: str = "cpu") -> dict[str, Path]:
    """Embed source with the model in checkpoint; write .npy, TSV and class-name files to out."""
    model = load(checkpoint, device=device)
    if not hasattr(model, "embed"):
        raise UserError(f"{checkpoint} holds a {model.kind} ({type(model).__name__}), which "
                        "has no embedding; give an autoencoder, contrastive or VAE model")
    found = read_images(source, split, limit, data_dir)
    embeddings = embed_images(model, found.images)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_npy(embeddings, folder / "embeddings.npy")
    save_npy(found.labels, folder / "labels.npy")
    vectors, metadata = write_projector_tsv(embeddings, found.labels, found.class_names,
                                            found.names, folder)
    write_json_atomic({"class_names": found.class_names, "checkpoint": str(checkpoint),
                       "source": source, "count": len(found.names),
                       "dimensions": int(embeddings.shape[1])}, folder / "embeddings.json")
    return {"embeddings": folder / "embeddings.npy", "labels": folder / "labels.npy",
            "vectors": vectors, "metadata": metadata, "info": folder / "embeddings.json"}

