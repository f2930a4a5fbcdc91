"""Photos stored content-addressed under a domain's photo folder, each with its artifact row.
Apart from image_files.py (reading and judging photos), so that a face worker process, which
only reads photos, loads no database layer."""

from __future__ import annotations

from pathlib import Path

from facerec_pipeline.core.artifacts.store import (
    ORIGINAL,
    ArtifactKey,
    ArtifactStore,
    fill_copy,
    fill_move,
)
from facerec_pipeline.core.images.image_files import IMAGE_SUFFIXES, SHA256_HEX


def photo_path(photos_dir: Path, sha256: str, suffix: str) -> Path:
    """Where the photo of content `sha256` is kept in a domain's photo folder
    (storage/training/{domain}/): `{sha256[:2]}/{sha256}{suffix}`, one layout for every source.
    A photo stored under another layout by an earlier version (downloads once lay flat in the
    folder) stays where it is: the path the database records is what is read."""
    if not SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return photos_dir / sha256[:2] / f"{sha256}{suffix}"


def original_key(domain: str, sha256: str, suffix: str) -> ArtifactKey:
    return ArtifactKey(domain, ORIGINAL, sha256, {"suffix": suffix})


def store_content_addressed(
    source: Path, photos_dir: Path, sha256: str, artifacts: ArtifactStore, domain: str
) -> Path:
    """Copy `source` to its photo_path (with its artifact row) unless already there; return the
    path."""
    suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_SUFFIXES else ".bin"
    target = photo_path(photos_dir, sha256, suffix)
    key = original_key(domain, sha256, suffix)
    return artifacts.put(target, key, fill_copy(source), sha256=sha256).path


def move_content_addressed(
    file: Path, photos_dir: Path, sha256: str, artifacts: ArtifactStore, domain: str
) -> Path:
    """Move `file` (a finished download of content `sha256`, in INCOMING_DIR) to its
    photo_path, keeping its suffix, with its artifact row; return the path. Two downloads of one
    content may race here: whichever lands, the content is the same."""
    target = photo_path(photos_dir, sha256, file.suffix)
    key = original_key(domain, sha256, file.suffix)
    stored = artifacts.put(target, key, fill_move(file), sha256=sha256).path
    file.unlink(missing_ok=True)  # the content was there already
    return stored
