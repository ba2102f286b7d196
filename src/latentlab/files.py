"""Atomic writes: a file is either its old self or the whole new one, never half written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# The process's umask, read once (reading it means setting it).
UMASK = os.umask(0)
os.umask(UMASK)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside path; when the block ends without error it replaces
    path in one step, so path never holds a half-written file. The temporary file is
    removed whatever happens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~UMASK)  # mkstemp's 0600 would make results private to their writer
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save that never leaves a half-written file at path."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_npz_atomic(path: str | Path, **arrays: Any) -> None:
    """numpy.savez that never leaves a half-written file at path."""
    import numpy as np

    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    write_text_atomic(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)
