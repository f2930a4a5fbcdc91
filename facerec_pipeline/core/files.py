"""File helpers shared by the stages: content hashes and writes that never leave half a file."""

from __future__ import annotations

import hashlib
import os
import shutil
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


NEARLY_FULL_BYTES = 1024 * 1024


def full_disk(*paths: Path) -> str | None:
    """`no space left on the device of X (N bytes free)` for the first of `paths` (or its
    nearest existing parent) whose filesystem is (nearly) full, else None: what a "disk I/O
    error" from SQLite, or a failed write, most often means."""
    for path in paths:
        probe = Path(path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            continue
        if free < NEARLY_FULL_BYTES:
            return f"no space left on the device of {path} ({free} bytes free)"
    return None
