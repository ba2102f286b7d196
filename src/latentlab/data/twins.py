"""Twins: one image stored twice, e.g. an official CIFAR-10 image and its JPEG re-encoding.

A twins file beside a dataset (`<name>-jpeg-twins.txt` beside `<name>.zip`) lists one pair
of names per line. Training leaves out the twins of validation and test images, scoring
reads the twins of test images (the shortcut ratio), and a kNN bank leaves out the twins of
the images it scores: an image scores a model only if neither it nor its twin was seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from latentlab.data.folders import decode_image, folder_entries, name_ends, visible
from latentlab.errors import UserError


def folder_path(spec: str) -> Path | None:
    return Path(spec.removeprefix("folder:")).expanduser() if spec.startswith("folder:") else None


def twins_file(spec: str) -> Path | None:
    """The twins file beside a folder dataset: <name>-jpeg-twins.txt beside <name>[.zip]."""
    path = folder_path(spec)
    if path is None:
        return None
    candidate = path.parent / f"{path.name.removesuffix('.zip')}-jpeg-twins.txt"
    return candidate if candidate.is_file() else None


def read_twins(path: Path) -> dict[str, str]:
    """Both directions of every pair of names in a twins file."""
    twins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        names = line.split()
        if not names:
            continue
        if len(names) != 2:
            raise UserError(f"{path}, line {number}: expected two names, found {len(names)}")
        twins[names[0]], twins[names[1]] = names[1], names[0]
    return twins


def twins_beside(specs: list[str | None]) -> dict[str, str]:
    """Both directions of every pair in the twins files beside the given datasets."""
    twins: dict[str, str] = {}
    for spec in specs:
        path = twins_file(spec) if spec else None
        if path is not None:
            twins.update(read_twins(path))
    return twins


def twin_of(name: str, twins: dict[str, str]) -> str | None:
    """The twin a twins file names for this member name (matched by its ends), or None."""
    end = next((e for e in name_ends(name) if e in twins), None)
    return None if end is None else twins[end]


def twins_of(names: list[str], twins: dict[str, str]) -> list[str]:
    """The twin of each name that has one."""
    return [twin for twin in (twin_of(n, twins) for n in names) if twin is not None]


def read_twin_images(dataset: str, names: list[str]) -> Tensor | None:
    """(N, C, H, W) uint8: the JPEG twin of every named image, read from the folder or zip
    beside the dataset that holds them; None without a twins file or such a folder."""
    twins_path, path = twins_file(dataset), folder_path(dataset)
    if twins_path is None or path is None or not names:
        return None
    twins = read_twins(twins_path)
    wanted = []
    for name in names:
        twin = twin_of(name, twins)
        if twin is None:
            raise UserError(f"{twins_path} names no twin for {name}; every test image needs one")
        wanted.append(twin)
    for candidate in sorted(path.parent.iterdir()):
        if candidate == path or not (candidate.is_dir() or candidate.suffix == ".zip"):
            continue
        members, read = folder_entries(candidate)
        by_end = {end: m for m in members if visible(m) for end in name_ends(m)}
        if all(w in by_end for w in wanted):
            arrays = [decode_image(read(by_end[w]), f"{candidate}: {w}") for w in wanted]
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    raise UserError(f"{twins_path} names JPEG twins such as {wanted[0]}, but no folder or zip "
                    f"beside {path} holds them all; put the archive of the twins beside it")
