"""The checks a gallery version must pass before it serves production. Pure functions over the
loaded version; each returns (passed, figures)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from facerec_pipeline.core.gallery.loading import LoadedGallery
from facerec_pipeline.core.gallery.self_evaluation import evaluate

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
    return not short, {
        "minimum": minimum,
        "people_below_minimum": short,
        "fewest": min(counts.values()) if counts else 0,
    }


def distinct_identities(gallery: LoadedGallery, min_distance: float) -> Outcome:
    """No two people whose mean faces are closer than `min_distance` (cosine): two names on one
    face, as when a person's folder holds another person's photos or one person's photos are
    split under two names. Nearest centroids in chunks, never a people x people matrix."""
    names = [person["normalized_name"] for person in gallery.people]
    if len(names) < 2:
        return True, {"closest_pair": None}
    counts = np.bincount(gallery.person_rows, minlength=len(names))[:, None]
    centroids = np.zeros((len(names), gallery.matrix.shape[1]), dtype=np.float64)
    np.add.at(centroids, gallery.person_rows, gallery.matrix)
    centroids /= np.maximum(counts, 1)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    too_close, closest = [], (np.inf, 0, 0)
    step = max(1, (1 << 22) // len(names))
    for begin in range(0, len(names), step):
        distances = 1.0 - centroids[begin : begin + step] @ centroids.T
        rows = np.arange(distances.shape[0])
        distances[rows, begin + rows] = np.inf
        nearest = distances.argmin(axis=1)
        for row, other in zip(rows, nearest, strict=True):
            distance = float(distances[row, other])
            if distance < closest[0]:
                closest = (distance, begin + row, int(other))
        for row, other in zip(*np.nonzero(distances < min_distance), strict=True):
            if begin + row < other:
                too_close.append(
                    [names[begin + row], names[other], round(float(distances[row, other]), 4)]
                )
    figures = {
        "min_distance": min_distance,
        "closest_pair": [names[closest[1]], names[closest[2]]],
        "closest_distance": round(closest[0], 4),
        "too_close": too_close[:50],
        "too_close_count": len(too_close),
    }
    return not too_close, figures


def leave_one_out_accuracy(gallery: LoadedGallery, floor: float) -> Outcome:
    figures = evaluate(gallery.matrix, labels(gallery))
    accuracy = figures.get("loo_top1_accuracy")
    passed = accuracy is None or accuracy >= floor
    return passed, {"floor": floor, **figures}


def no_quality_drop(candidate: dict | None, serving: dict | None, max_drop: float) -> Outcome:
    """The candidate's expected DIR and rank-1 at its calibrated operating point (both from
    the gallery's own faces) are not more than `max_drop` below the serving version's. DIR is
    compared only between versions calibrated for the same target FAR and decision rule (a
    stricter target or a rule that bounds the FAR more tightly lowers DIR by design)."""
    figures: dict[str, Any] = {"max_drop": max_drop}
    same_target = all(
        (candidate or {}).get(key) == (serving or {}).get(key) for key in ("target_far", "rule")
    )
    figures["same_target_far_and_rule"] = same_target
    failed = []
    for key in ("expected_dir", "expected_rank1") if same_target else ("expected_rank1",):
        new = (candidate or {}).get(key)
        old = (serving or {}).get(key)
        figures[key] = new
        figures[f"serving_{key}"] = old
        if new is not None and old is not None and new < old - max_drop:
            failed.append(key)
    figures["dropped"] = failed
    return not failed, figures


def not_shrunk(face_count: int, previous_face_count: int | None, max_shrink: float) -> Outcome:
    if not previous_face_count:
        return True, {"previous_faces": previous_face_count, "faces": face_count}
    shrink = 1.0 - face_count / previous_face_count
    return shrink <= max_shrink, {
        "previous_faces": previous_face_count,
        "faces": face_count,
        "shrink": round(shrink, 4),
        "max_shrink": max_shrink,
    }


def no_person_lost(gallery: LoadedGallery, previous: set[str], still_present: set[str]) -> Outcome:
    """Everyone the serving version holds, and whom the domain still lists, is in the new one:
    a person whose photos all became unusable (say, replaced by copies of someone else's) would
    otherwise vanish from recognition."""
    lost = sorted((previous & still_present) - set(labels(gallery)))
    return not lost, {"lost_people": lost, "previous_people": len(previous)}
