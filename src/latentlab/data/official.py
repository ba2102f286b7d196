"""Official releases (CIFAR-10 pickles, MNIST and Fashion-MNIST IDX files): where they are
looked for, how they are downloaded (with checksums) and read."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST
from torchvision.datasets.utils import check_integrity, download_url

from latentlab.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


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
