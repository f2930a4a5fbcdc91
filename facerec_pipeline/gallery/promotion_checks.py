"""The checks a gallery version must pass before it serves production. Pure functions over the
loaded version; each returns (passed, figures)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from facerec_pipeline.gallery.evaluation import evaluate
from facerec_pipeline.gallery.publish import LoadedGallery

Outcome = tuple[bool, dict[str, Any]]


def labels(gallery: LoadedGallery) -> list[str]:
    return gallery.labels


def coherent_model(gallery: LoadedGallery) -> Outcome:
    """One model configuration and embedding dimension across every batch."""
    configs = sorted({meta["model_config"] for meta in gallery.batch_metadata})
    dims = sorted({int(meta["dim"]) for meta in gallery.batch_metadata})
    rows_match = gallery.matrix.shape[0] == len(gallery.person_rows) == len(gallery.faces)
    passed = configs == [gallery.model_config] and dims == [gallery.matrix.shape[1]] and rows_match
    return passed, {"model_configs": configs, "dims": dims, "rows_match_labels": rows_match}


def no_photo_in_two_people(gallery: LoadedGallery) -> Outcome:
    owners: dict[str, set[str]] = {}
    for face in gallery.faces:
        owners.setdefault(face["image_sha256"], set()).add(face["normalized_name"])
    shared = {sha[:12]: sorted(people) for sha, people in owners.items() if len(people) > 1}
    return not shared, {"photos_in_two_people": shared}


def faces_per_person(gallery: LoadedGallery, minimum: int) -> Outcome:
    counts = Counter(labels(gallery))
    short = {person: n for person, n in sorted(counts.items()) if n < minimum}
    return not short, {"minimum": minimum, "people_below_minimum": short,
                       "fewest": min(counts.values()) if counts else 0}  # fmt: skip


def distinct_identities(gallery: LoadedGallery, min_distance: float) -> Outcome:
    """No two people whose mean faces are closer than `min_distance` (cosine): two names on one
    face, as when a person's folder holds another person's photos."""
    names = sorted(set(labels(gallery)))
    if len(names) < 2:
        return True, {"closest_pair": None}
    label_array = np.asarray(labels(gallery))
    centroids = np.stack([gallery.matrix[label_array == name].mean(axis=0) for name in names])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    distances = 1.0 - centroids @ centroids.T
    np.fill_diagonal(distances, np.inf)
    i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
    closest = float(distances[i, j])
    too_close = [
        [names[a], names[b], round(float(distances[a, b]), 4)]
        for a in range(len(names)) for b in range(a + 1, len(names))
        if distances[a, b] < min_distance
    ]  # fmt: skip
    figures = {"min_distance": min_distance, "closest_pair": [names[i], names[j]],
               "closest_distance": round(closest, 4), "too_close": too_close}  # fmt: skip
    return not too_close, figures


def leave_one_out_accuracy(gallery: LoadedGallery, threshold: float, floor: float) -> Outcome:
    figures = evaluate(gallery.matrix, labels(gallery), threshold)
    accuracy = figures.get("loo_top1_accuracy")
    passed = accuracy is None or accuracy >= floor
    return passed, {"floor": floor, **figures}


def not_shrunk(face_count: int, previous_face_count: int | None, max_shrink: float) -> Outcome:
    if not previous_face_count:
        return True, {"previous_faces": previous_face_count, "faces": face_count}
    shrink = 1.0 - face_count / previous_face_count
    return shrink <= max_shrink, {"previous_faces": previous_face_count, "faces": face_count,
                                  "shrink": round(shrink, 4), "max_shrink": max_shrink}  # fmt: skip


def no_person_lost(gallery: LoadedGallery, previous: set[str], still_present: set[str]) -> Outcome:
    """Everyone the serving version holds, and whom the domain still lists, is in the new one:
    a person whose photos all became unusable (say, replaced by copies of someone else's) would
    otherwise vanish from recognition."""
    lost = sorted((previous & still_present) - set(labels(gallery)))
    return not lost, {"lost_people": lost, "previous_people": len(previous)}
