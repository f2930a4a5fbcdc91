"""Identity consistency: within one person's faces, drop the ones that do not look like the rest
(a photo of someone else planted in the folder, a mislabelled Commons file). Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdentityDecision:
    accepted: bool
    # None | "inconsistent_identity" (quarantined) | "unconfirmed_identity" (kept: see below)
    reason: str | None
    centroid_distance: float | None


def consistency_decisions(vectors: np.ndarray, threshold: float) -> list[IdentityDecision]:
    """`vectors`: one person's L2-normalized embeddings. Repeatedly quarantine the face farthest
    from the mean of the others while that distance exceeds `threshold` (cosine). Two faces that
    disagree cannot be told apart: both are kept, marked `unconfirmed_identity`, so that a person
    whose photos hold a usable face always keeps one in the gallery (the promotion check
    `distinct_identities` still stops a folder filled with someone else's photos)."""
    count = len(vectors)
    if count == 1:
        return [IdentityDecision(True, None, None)]
    kept = list(range(count))
    reasons: dict[int, str] = {}
    unconfirmed: list[int] = []
    while len(kept) >= 2:
        distances = _leave_one_out_distances(vectors[kept])
        worst = int(np.argmax(distances))
        if distances[worst] <= threshold:
            break
        if len(kept) == 2:
            unconfirmed = list(kept)
            break
        reasons[kept.pop(worst)] = "inconsistent_identity"
    final_distances = dict.fromkeys(range(count), None)
    if len(kept) >= 2:
        for index, distance in zip(kept, _leave_one_out_distances(vectors[kept]), strict=True):
            final_distances[index] = float(distance)
    reference = _unit(vectors[kept].mean(axis=0)) if kept else None
    decisions = []
    for index in range(count):
        distance = final_distances[index]
        if distance is None and reference is not None:
            distance = float(1.0 - vectors[index] @ reference)
        reason = reasons.get(index) or ("unconfirmed_identity" if index in unconfirmed else None)
        decisions.append(IdentityDecision(index not in reasons, reason, distance))
    return decisions


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _leave_one_out_distances(vectors: np.ndarray) -> np.ndarray:
    total = vectors.sum(axis=0)
    distances = np.empty(len(vectors), dtype=np.float64)
    for index, vector in enumerate(vectors):
        distances[index] = 1.0 - float(vector @ _unit(total - vector))
    return distances
