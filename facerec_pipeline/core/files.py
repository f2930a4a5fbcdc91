"""File helpers shared by the stages: content hashes and writes that never leave half a file."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _partial(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.partial")


def write_atomically(target: Path, data: bytes) -> Path:
    """Write `data` to `target` through a temporary file renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    partial.write_bytes(data)
    partial.replace(target)
    return target


def copy_atomically(source: Path, target: Path) -> Path:
    return save_atomically(target, lambda partial: shutil.copyfile(source, partial))


def save_atomically(target: Path, save) -> Path:
    """Call `save(path)` on a temporary path, then rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    save(partial)
    partial.replace(target)
    return target
