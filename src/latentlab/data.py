"""Datasets as in-memory uint8 tensors: official releases, scikit-learn's digits, image folders.

Every loader returns an `ImageData` whose images are (N, C, H, W) uint8 tensors, so training
never touches Python per image. Decoded datasets are cached as one tensor file each, so the
second run starts in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST
from torchvision.datasets.utils import check_integrity, download_url
from tqdm import tqdm

from latentlab.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "valid": "test",
               "validation": "test"}
# Bump when the decoded layout changes, so stale caches are ignored.
CACHE_FORMAT = 2


@dataclass
class ImageData:
    """A labelled dataset held in memory."""

    name: str
    train_images: Tensor  # (N, C, H, W) uint8
    train_labels: Tensor  # (N,) int64
    test_images: Tensor  # (M, C, H, W) uint8
    test_labels: Tensor  # (M,) int64
    class_names: list[str]
    source: str  # where the files were found
    # member names of folder datasets (empty for the others), for exclusion lists and twins
    train_names: list[str] = field(default_factory=list)
    test_names: list[str] = field(default_factory=list)
    # the seeded validation split held out of the training images (splits.hold_out_validation)
    val_images: Tensor | None = None
    val_labels: Tensor | None = None
    val_names: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    def limit(self, train: int | None, test: int | None, seed: int = 0) -> ImageData:
        """A seeded random subset (for quick runs); None keeps a split whole. Each split is
        drawn on its own, so the test subset does not depend on the training limit."""

        def pick(images: Tensor, labels: Tensor, names: list[str],
                 n: int | None) -> tuple[Tensor, Tensor, list[str]]:
            if n is None or n >= len(labels):
                return images, labels, names
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(labels), generator=generator)[:n].sort().values
            return images[keep], labels[keep], [names[i] for i in keep] if names else []

        train_images, train_labels, train_names = pick(self.train_images, self.train_labels,
                                                       self.train_names, train)
        test_images, test_labels, test_names = pick(self.test_images, self.test_labels,
                                                    self.test_names, test)
        return replace(self, train_images=train_images, train_labels=train_labels,
                       train_names=train_names, test_images=test_images,
                       test_labels=test_labels, test_names=test_names)

    def select_train(self, keep: Tensor) -> ImageData:
        """The same data with only the training images where keep (N,) bool is True."""
        names = [n for n, k in zip(self.train_names, keep.tolist()) if k]
        return replace(self, train_images=self.train_images[keep],
                       train_labels=self.train_labels[keep], train_names=names)


# ----------------------------------------------------------------------------- locations

def cache_dir() -> Path:
    """The user cache: $LATENTLAB_CACHE, else $XDG_CACHE_HOME/latentlab, else ~/.cache/latentlab."""
    if os.environ.get("LATENTLAB_CACHE"):
        return Path(os.environ["LATENTLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latentlab"


def search_roots(data_dir: str | Path | None) -> list[Path]:
    """Where official datasets are looked for, in order; downloads go to the user cache."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("LATENTLAB_DATA"):
        roots.append(Path(os.environ["LATENTLAB_DATA"]))
    roots.append(cache_dir() / "datasets")
    roots.append(Path("/usr/share/datasets"))  # Debian's dataset-* packages
    return roots


@dataclass
class OfficialDataset:
    """An official release: its files, where they may lie, how to fetch and read them."""

    name: str
    title: str
    files: list[tuple[str, str]]  # (file name, md5) of what is downloaded
    mirrors: list[str]  # URL prefixes tried in order
    folders: list[str]  # sub-folders of a search root that may hold the files
    read: Callable[[dict[str, Path]], tuple[Tensor, Tensor, Tensor, Tensor]]
    class_names: list[str]

    def locate(self, root: Path) -> dict[str, Path] | None:
        """The dataset's files under root (compressed or not), or None if any is missing."""
        for folder in self.folders:
            found = {}
            for filename, _ in self.files:
                for candidate in (filename, filename.removesuffix(".gz")):
                    if (root / folder / candidate).is_file():
                        found[filename] = root / folder / candidate
                        break
            if len(found) == len(self.files):
                return found
            if self.name == "cifar10" and (root / folder / "cifar-10-batches-py").is_dir():
                batches = root / folder / "cifar-10-batches-py"
                if all((batches / f).is_file() for f, _ in CIFAR10.train_list + CIFAR10.test_list):
                    return {"cifar-10-batches-py": batches}
        return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not; raise UserError if it is damaged."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
        if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
            raise ValueError("bad magic number")
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(shape)):
            raise ValueError(f"expected {int(np.prod(shape))} values, found {body.size}")
        return body.reshape(shape)
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as error:
        raise UserError(f"{path} is damaged ({error}); delete it and run again "
                        "to download a fresh copy") from None


def read_mnist_like(files: dict[str, Path]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    def load(images: str, labels: str) -> tuple[Tensor, Tensor]:
        x = read_idx(files[images])
        y = read_idx(files[labels])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"{files[images]} and {files[labels]} do not match "
                            f"({x.shape} images, {y.shape} labels); replace them")
        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    return (*load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            *load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


def read_cifar10(files: dict[str, Path]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Read the official python-pickle batches, from the .tar.gz or its extracted folder."""
    if "cifar-10-batches-py" in files:
        folder = files["cifar-10-batches-py"]

        def open_batch(name: str) -> bytes:
            return (folder / name).read_bytes()
        where = str(folder)
    else:
        archive = files[CIFAR10.filename]
        try:
            tar = tarfile.open(archive, "r:gz")
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as error:
            raise UserError(f"{archive} is damaged ({error}); delete it and run again") from None

        def open_batch(name: str) -> bytes:
            handle = tar.extractfile(members[name]) if name in members else None
            if handle is None:
                raise UserError(f"{archive} has no {name}; it is not the CIFAR-10 python release")
            return handle.read()
        where = str(archive)

    def load(names: list[str]) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for name in names:
            try:
                batch = pickle.loads(open_batch(name), encoding="latin1")
                x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(batch["labels"], dtype=np.int64)
                if len(x) != len(y) or (len(y) and not 0 <= y.min() <= y.max() <= 9):
                    raise ValueError("labels do not match the images")
            except UserError:
                raise
            except Exception as error:  # pickle raises many types on damaged input
                raise UserError(f"CIFAR-10 batch {name} in {where} is damaged ({error}); "
                                "delete it and run again") from None
            images.append(x)
            labels.append(y)
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    return (*load([n for n, _ in CIFAR10.train_list]), *load([n for n, _ in CIFAR10.test_list]))


OFFICIAL = {
    "cifar10": OfficialDataset(
        "cifar10", "CIFAR-10", [(CIFAR10.filename, CIFAR10.tgz_md5)],
        [CIFAR10.url.removesuffix(CIFAR10.filename)], ["cifar10", "cifar-10", "CIFAR10", ""],
        read_cifar10, CIFAR10_CLASSES),
    "mnist": OfficialDataset(
        "mnist", "MNIST", list(MNIST.resources), list(MNIST.mirrors),
        ["mnist", "MNIST/raw", ""], read_mnist_like, [str(i) for i in range(10)]),
    "fashion-mnist": OfficialDataset(
        "fashion-mnist", "Fashion-MNIST", list(FashionMNIST.resources), [FashionMNIST.mirrors[0]],
        ["fashion-mnist", "FashionMNIST/raw", ""], read_mnist_like, FASHION_CLASSES),
}
DATASET_NAMES = [*OFFICIAL, "digits", "folder:PATH"]


def find_official(spec: OfficialDataset, data_dir: str | Path | None) -> dict[str, Path] | None:
    for root in search_roots(data_dir):
        found = spec.locate(root)
        if found:
            return found
    return None


def download(spec: OfficialDataset) -> dict[str, Path]:
    """Fetch the official files into the user cache, verifying each md5 checksum."""
    target = cache_dir() / "datasets" / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for filename, md5 in spec.files:
        path = target / filename
        if check_integrity(str(path), md5):
            continue
        errors = []
        for mirror in spec.mirrors:
            try:
                print(f"downloading {mirror}{filename}")
                download_url(mirror + filename, str(target), filename)
                break
            except (urllib.error.URLError, OSError, RuntimeError) as error:
                errors.append(f"{mirror}{filename}: {error}")
        else:
            roots = ", ".join(str(r) for r in search_roots(None))
            raise UserError(
                f"{spec.title} is not on this machine and could not be downloaded "
                f"({errors[-1] if errors else 'no mirror'}). "
                f"Put {', '.join(f for f, _ in spec.files)} "
                f"in {target} (or in a folder passed as --data-dir, or $LATENTLAB_DATA; "
                f"searched: {roots})")
        if not check_integrity(str(path), md5):
            path.unlink(missing_ok=True)
            raise UserError(f"downloaded {filename} failed its checksum (expected md5 {md5}); "
                            "the file was deleted, run again to retry the download")
    found = spec.locate(target)
    assert found is not None
    return found


# ----------------------------------------------------------------------------- image folders

def folder_entries(path: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """Relative file names under a directory or inside a zip, and a reader for each."""
    if not path.exists():
        raise UserError(f"folder dataset {path} does not exist; give a directory or a .zip "
                        "laid out as <split>/<class>/<image> or <class>/<image>")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is neither a directory nor a zip archive")
        archive = zipfile.ZipFile(path)
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        return names, archive.read
    names = [str(p.relative_to(path)) for p in sorted(path.rglob("*")) if p.is_file()]
    return names, lambda name: (path / name).read_bytes()


def visible(name: str) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """(H, W, C) uint8 with C = 1 or 3."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image: Image.Image = opened
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "LA", "I", "I;16", "F")
                                      else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UserError(f"{name} is not a readable image ({error}); remove it or replace it"
                        ) from None
    return array[:, :, None] if array.ndim == 2 else array


def load_folder(path: Path, seed: int = 0) -> ImageData:
    """Images laid out as <split>/<class>/<image>, or <class>/<image> split by a seeded hold-out."""
    names, read = folder_entries(path)
    names = sorted(n for n in names if visible(n))
    if not names:
        raise UserError(f"no images found in {path}; expected <split>/<class>/<image> "
                        "or <class>/<image> files")
    parts = [Path(n).parts for n in names]
    # Strip wrapping folders such as cifar10/ in cifar10/train/cat/0001.jpg.
    while (all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1
           and parts[0][0].lower() not in SPLIT_NAMES):
        parts = [p[1:] for p in parts]
    depths = {len(p) for p in parts}
    if depths == {3} and all(p[0].lower() in SPLIT_NAMES for p in parts):
        splits = [SPLIT_NAMES[p[0].lower()] for p in parts]
        classes = [p[1] for p in parts]
    elif depths == {2}:
        splits, classes = [], [p[0] for p in parts]
    else:
        odd = next(n for n, p in zip(names, parts) if len(p) not in (2, 3) or (
            len(p) == 3 and p[0].lower() not in SPLIT_NAMES))
        raise UserError(f"{path}: cannot tell the classes apart at {odd}; lay images out as "
                        "<split>/<class>/<image> (splits: train, test) or <class>/<image>")
    for name in names:
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{path}: {name} is not an image file; remove it from the folder")
    class_names = sorted(set(classes))
    arrays = [decode_image(read(n), f"{path}: {n}")
              for n in tqdm(names, desc=f"decoding {path.name}", unit="img", leave=False,
                            disable=None)]
    sizes = {a.shape[:2]: n for a, n in zip(arrays, names)}
    if len(sizes) > 1:
        (s1, n1), (s2, n2) = list(sizes.items())[:2]
        raise UserError(f"{path}: images have different sizes, e.g. {s1[1]}x{s1[0]} ({n1}) and "
                        f"{s2[1]}x{s2[0]} ({n2}); resize them to one size first")
    channels = max(a.shape[2] for a in arrays)
    images = torch.from_numpy(np.stack([np.broadcast_to(a, (*a.shape[:2], channels))
                                        for a in arrays])).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([class_names.index(c) for c in classes])
    if splits:
        is_train = torch.tensor([s == "train" for s in splits])
        if is_train.all() or not is_train.any():
            raise UserError(f"{path}: needs both a train/ and a test/ folder "
                            "(or no split folders at all)")
    else:
        is_train = holdout_mask(labels, seed)
    return ImageData(f"folder:{path}", images[is_train], labels[is_train], images[~is_train],
                     labels[~is_train], class_names, str(path),
                     [n for n, t in zip(names, is_train.tolist()) if t],
                     [n for n, t in zip(names, is_train.tolist()) if not t])


def holdout_mask(labels: Tensor, seed: int, test_fraction: float = 0.2) -> Tensor:
    """True for training items: a seeded, class-stratified hold-out of test_fraction."""
    generator = torch.Generator().manual_seed(seed)
    is_train = torch.ones(len(labels), dtype=torch.bool)
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        is_train[members[: round(len(members) * test_fraction)]] = False
    return is_train


def load_digits_data() -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16, scaled to 0..255)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    is_train = holdout_mask(labels, seed=0)
    return ImageData("digits", images[is_train], labels[is_train], images[~is_train],
                     labels[~is_train], [str(i) for i in range(10)], "scikit-learn")


# ----------------------------------------------------------------------------- entry point

def fingerprint(paths: list[Path]) -> str:
    """Changes when any file under paths changes size or modification time."""
    digest = hashlib.sha256(str(CACHE_FORMAT).encode())
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            stat = f.stat()
            digest.update(f"{f.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached(key: str, build: Callable[[], ImageData]) -> ImageData:
    """Load a decoded dataset from the cache, or build it and store it atomically."""
    path = cache_dir() / "decoded" / f"{key}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            return ImageData(**saved)
        except Exception:  # a damaged cache entry is rebuilt, never fatal
            path.unlink(missing_ok=True)
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from latentlab.checkpoint import save_atomic
        save_atomic(vars(data), path)
    except OSError:
        pass  # a read-only cache only costs speed
    return data


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0,
                 download_missing: bool = True) -> ImageData:
    """Load a dataset by name: cifar10, fashion-mnist, mnist, digits or folder:PATH."""
    if name == "digits":
        return load_digits_data()
    if name.startswith("folder:"):
        path = Path(name.removeprefix("folder:")).expanduser()
        if not path.exists():
            load_folder(path)  # raises the explanatory error
        key = f"folder-{path.name}-{fingerprint([path])}-{seed}"
        return cached(key, lambda: load_folder(path, seed))
    spec = OFFICIAL.get(name)
    if spec is None:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    files = find_official(spec, data_dir)
    if files is None:
        if not download_missing:
            raise UserError(f"{spec.title} not found")
        files = download(spec)
    key = f"{spec.name}-{fingerprint(list(files.values()))}"

    def build() -> ImageData:
        train_x, train_y, test_x, test_y = spec.read(files)
        return ImageData(spec.name, train_x, train_y, test_x, test_y, spec.class_names,
                         str(next(iter(files.values())).parent))
    return cached(key, build)


def describe_datasets(data_dir: str | Path | None = None) -> Iterator[tuple[str, str]]:
    """(name, where it was found or why not) for every dataset name, without downloading."""
    for spec in OFFICIAL.values():
        files = find_official(spec, data_dir)
        if files:
            yield spec.name, f"found in {next(iter(files.values())).parent}"
        else:
            searched = ", ".join(str(r) for r in search_roots(data_dir))
            yield spec.name, (f"not found (searched {searched}); downloaded on first use, "
                              f"or put {', '.join(f for f, _ in spec.files)} in one of those")
    yield "digits", "built in (scikit-learn's 8x8 digits, 1,797 images)"
    yield "folder:PATH", "your own images: a directory or .zip of <split>/<class>/<image>"
