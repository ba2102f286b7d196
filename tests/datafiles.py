"""Tiny datasets written in the official formats (CIFAR pickles, IDX gz, image folders)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [int(i % 10) for i in range(n)], "batch_label": f"batch {seed}"}


def write_cifar_folder(root: Path, n: int = 20) -> Path:
    """The official cifar-10-batches-py layout with n images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(cifar_batch(n, i)))
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_batch(n, 0)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["x"] * 10}))
    return folder


def write_idx_images(path: Path, images: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", len(labels))
    with gzip.open(path, "wb") as f:
        f.write(header + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx_images(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx_labels(root / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    write_idx_images(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx_labels(root / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return root


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 6,
                       splits: tuple[str, ...] = ("train", "test"), size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for split in splits or ("",):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                array = np.full((size, size, 3), 40 * c, dtype=np.uint8)
                array[0, 0] = rng.integers(0, 256, 3)
                (folder / f"{i:03d}.png").write_bytes(png_bytes(array))
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + str(path.relative_to(folder)))
    return archive


def tar_cifar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


TWIN_CLASSES = ("cat", "dog")


def unique_image(number: int) -> np.ndarray:
    """An 8x8 image whose top-left pixel spells out `number` (red + 256 green), so every
    image is told apart."""
    array = np.full((8, 8, 3), 90, dtype=np.uint8)
    array[0, :3] = [number % 256, number // 256, 7]
    return array


def write_official_and_twins(root: Path, per_class: int = 20) -> tuple[str, str]:
    """official.zip (<class>/<image>.png, exact pixels), official-jpeg-twins.txt beside it,
    and copy/ (<split>/<class>/<image>.png) holding every official image once more as its
    'twin' (the same pixels under another name) plus test images of its own."""
    official, copy = root / "official", root / "copy"
    lines = []
    for c, name in enumerate(TWIN_CLASSES):
        (official / name).mkdir(parents=True)
        for split in ("train", "test"):
            (copy / split / name).mkdir(parents=True)
        for i in range(per_class):
            number = c * 1000 + i
            (official / name / f"o{i:03d}.png").write_bytes(png_bytes(unique_image(number)))
            (copy / "train" / name / f"{i:04d}.png").write_bytes(png_bytes(unique_image(number)))
            (copy / "test" / name / f"{i:04d}.png").write_bytes(
                png_bytes(unique_image(number + 500)))
            lines.append(f"{name}/o{i:03d}.png train/{name}/{i:04d}.png")
    zip_folder(official, root / "official.zip", prefix="official/")
    (root / "official-jpeg-twins.txt").write_text("\n".join(lines) + "\n")
    return f"folder:{root / 'official.zip'}", f"folder:{copy}"
