"""The file work of an erasure (erasure.py), with no database: one person's rows and crops out of
a gallery batch folder, their entries out of the folder scan's cache, a file or folder removed,
and a SQLite file vacuumed so deleted rows leave no bytes behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.core.artifacts.store import fill_bytes
from facerec_pipeline.core.files import write_atomically


def remove_path(path: Path) -> int:
    """Delete the file, folder or link `path`: 1 if there was one, else 0."""
    if path.is_dir():
        shutil.rmtree(path)
        return 1
    if path.exists() or path.is_symlink():
        path.unlink()
        return 1
    return 0


def scrub_batch(
    batch_dir: Path, normalized_name: str, rewrite: Callable[[Path, Callable], Any]
) -> tuple[int, bool]:
    """Remove `normalized_name`'s rows and crops from one batch folder, rewriting its files
    through `rewrite(file, fill)` (the file with its artifact row). Returns (rows removed,
    whether the batch is now empty: then the folder is deleted)."""
    faces_file = batch_dir / "faces.json"
    if not faces_file.exists():
        return 0, False
    faces = json.loads(faces_file.read_text())
    keep = [i for i, face in enumerate(faces) if face["normalized_name"] != normalized_name]
    removed = len(faces) - len(keep)
    if not removed:
        return 0, False
    if not keep:
        shutil.rmtree(batch_dir)
        return removed, True
    matrix = np.load(batch_dir / "embeddings.npy", allow_pickle=False)
    if matrix.shape[0] == len(faces):
        matrix = matrix[keep]
    elif matrix.shape[0] != len(keep):  # len(keep): an erasure that died here wrote it already
        raise ValueError(
            f"{batch_dir}: embeddings.npy has {matrix.shape[0]} rows, faces.json {len(faces)}"
        )
    kept = [dict(faces[i], row=row) for row, i in enumerate(keep)]
    order = list(dict.fromkeys(face["normalized_name"] for face in kept))
    position = {name: i for i, name in enumerate(order)}
    rows = np.asarray([position[face["normalized_name"]] for face in kept], dtype=np.int32)
    rewrite(batch_dir / "embeddings.npy", lambda p: _save_npy(p, matrix))
    if (batch_dir / "people.json").exists():
        people = json.loads((batch_dir / "people.json").read_text())
        people = [p for p in people if p["normalized_name"] != normalized_name]
        rewrite(
            batch_dir / "people.json", fill_bytes(json.dumps(people, ensure_ascii=False).encode())
        )
        rewrite(batch_dir / "person_rows.npy", lambda p: _save_npy(p, rows))
    rewrite(faces_file, fill_bytes(json.dumps(kept, ensure_ascii=False, indent=1).encode()))
    metadata_file = batch_dir / "batch_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["people"] = [
        p for p in metadata.get("people", []) if p.get("normalized_name") != normalized_name
    ]
    metadata["person_count"] = len(order)
    metadata["face_count"] = len(kept)
    rewrite(metadata_file, fill_bytes(json.dumps(metadata, ensure_ascii=False, indent=1).encode()))
    remove_path(batch_dir / normalized_name)
    return removed, False


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def scrub_inspection_cache(cache: Path, folder: str | None, shas: set[str]) -> int:
    """Drop the folder scan's entries of the person's files (by folder and content hash)."""
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        return 0
    kept = {
        key: entry
        for key, entry in entries.items()
        if not (
            (folder is not None and Path(key).parent.name == folder)
            or entry.get("facts", {}).get("sha256") in shas
        )
    }
    if len(kept) != len(entries):
        write_atomically(cache, json.dumps(kept).encode())
    return len(entries) - len(kept)


def vacuum_sqlite(path: Path) -> bool:
    """Rewrite a SQLite file so deleted rows leave no bytes behind (free pages, the WAL)."""
    import sqlite3

    if not path.is_file():
        return False
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return True
