"""File helpers shared by the stages: content hashes and writes that never leave half a file."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def partial_path(target: Path) -> Path:
    """The temporary name a write of `target` uses until it is renamed into place: beside it,
    hidden, and distinct per process and thread (two writers of one content never collide)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")


def write_atomically(target: Path, data: bytes) -> Path:
    """Write `data` to `target` through a temporary file renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    partial.write_bytes(data)
    partial.replace(target)
    return target


def save_atomically(target: Path, save) -> Path:
    """Call `save(path)` on a temporary path, then rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    save(partial)
    partial.replace(target)
    return target
