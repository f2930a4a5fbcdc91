"""Duplicate photos within a domain: the same file (sha256) or the same picture resized or
recompressed (perceptual hash within a few bits). The earliest image is kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhotoRef:
    image_id: int
    sha256: str
    perceptual_hash: str | None


def find_duplicates(photos: list[PhotoRef], max_hash_distance: int) -> dict[int, int]:
    """Map image id -> id of the earlier image it duplicates. Photos are judged in id order."""
    duplicates: dict[int, int] = {}
    first_by_sha: dict[str, int] = {}
    kept_ids: list[int] = []
    kept_hashes = np.zeros(len(photos), dtype=np.uint64)
    for photo in sorted(photos, key=lambda p: p.image_id):
        original = first_by_sha.get(photo.sha256)
        if original is None and photo.perceptual_hash and kept_ids:
            distances = np.bitwise_count(
                kept_hashes[: len(kept_ids)] ^ np.uint64(int(photo.perceptual_hash, 16))
            )
            nearest = int(np.argmin(distances))
            if int(distances[nearest]) <= max_hash_distance:
                original = kept_ids[nearest]
        if original is not None:
            duplicates[photo.image_id] = original
            continue
        first_by_sha[photo.sha256] = photo.image_id
        if photo.perceptual_hash:
            kept_hashes[len(kept_ids)] = int(photo.perceptual_hash, 16)
            kept_ids.append(photo.image_id)
    return duplicates
