"""Open-set 1:N decisions: name the right person, or say "nobody". Pure numpy, no Dagster.

A domain holds hundreds to thousands of people, so the nearest face alone accepts far too many
strangers at any 1:1 threshold. The rule, chosen on the LFW development set (BENCHMARKS.md):

- a person's distance to a probe is the mean of the cosine distances of that person's two
  nearest faces (one face: its distance). It beat the nearest face and the mean face;
- the decision score is `d1 - (mean(d2..d4) - d1)`: the best person's distance less its margin
  over the next COHORT people. A stranger tends to sit about as near to several people; someone
  enrolled stands out from them. It beat the bare distance, the ratio d1/d2 and z/t-norms;
- a name is given when the score is at or under the gallery's threshold.

The threshold is calibrated when a version is built, from the gallery alone (no outside labels):
each gallery face, with its own person left out of the gallery, plays a stranger; the threshold
is the `target_far` quantile of those scores. The same pass, with only the face itself left out,
estimates the DIR (right name given) and rank-1 a user can expect.

Galleries are searched with the rows of one person contiguous (`person_rows` non-decreasing), as
the batch writer lays them out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

COHORT = 3  # people after the best whose mean distance sets the margin
RULE = "mean of the 2 nearest faces per person; score d1 - (mean(d2..d4) - d1)"
DEFAULT_TARGET_FAR = 0.01
CALIBRATION_PROBES = 10_000  # gallery faces used as pseudo-probes (a random sample above this)
CHUNK_CELLS = 1 << 22  # distances computed at once (16 MiB of float32)


@dataclass(frozen=True)
class OperatingPoint:
    """Where a gallery version accepts a name, and what that is expected to give."""

    threshold: float  # a name is given when the decision score is at or under this
    target_far: float
    expected_far: float | None  # share of simulated strangers given a name
    expected_dir: float | None  # share of simulated enrolled probes given their right name
    expected_rank1: float | None
    stranger_trials: int
    enrolled_trials: int
    rule: str = RULE
    # False: too few simulated strangers to resolve target_far; the threshold is then at most
    # the fallback (the model's 1:1 verification threshold)
    calibrated: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def person_starts(person_rows: np.ndarray) -> np.ndarray:
    """First row of each person; raises if a person's rows are not contiguous."""
    rows = np.asarray(person_rows)
    if len(rows) and (np.any(np.diff(rows) < 0) or rows[0] != 0 or np.any(np.diff(rows) > 1)):
        raise ValueError("gallery rows must be grouped by person (person_rows 0, 0, 1, 2, 2, ...)")
    return np.flatnonzero(np.r_[True, np.diff(rows) != 0]) if len(rows) else np.zeros(0, int)


def person_distances(distances: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(probes x faces) cosine distances -> (probes x people): mean of each person's two nearest
    faces, or the one face's distance."""
    counts = np.diff(np.r_[starts, distances.shape[1]])
    nearest = np.minimum.reduceat(distances, starts, axis=1)
    masked = np.where(distances <= np.repeat(nearest, counts, axis=1), np.inf, distances)
    second = np.minimum.reduceat(masked, starts, axis=1)
    return np.where(np.isfinite(second), (nearest + second) / 2, nearest)


def best_people(per_person: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` nearest people per probe, nearest first: (people, distances)."""
    count = min(count, per_person.shape[1])
    if count < per_person.shape[1]:
        part = np.argpartition(per_person, count - 1, axis=1)[:, :count]
    else:
        part = np.broadcast_to(np.arange(per_person.shape[1]), per_person.shape)
    values = np.take_along_axis(per_person, part, axis=1)
    order = np.argsort(values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


def decision_scores(sorted_distances: np.ndarray) -> np.ndarray:
    """d1 - (mean(d2..d4) - d1) per row of person distances sorted nearest first (missing or
    infinite cohort entries are left out; with no cohort the score is d1)."""
    d1 = sorted_distances[:, 0]
    cohort = sorted_distances[:, 1 : 1 + COHORT]
    finite = np.isfinite(cohort)
    counts = finite.sum(axis=1)
    means = np.where(finite, cohort, 0).sum(axis=1) / np.maximum(counts, 1)
    return np.where(counts > 0, 2 * d1 - means, d1)


def score_people(per_person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probes x people) person distances -> (best person, decision score) per probe."""
    people, distances = best_people(per_person, 1 + COHORT)
    return people[:, 0], decision_scores(distances)


def sample_probes(count: int, max_probes: int, seed: int = 0) -> np.ndarray:
    """Row numbers of the faces used as probes: all, or a fixed random sample of max_probes."""
    probes = np.arange(count)
    if count > max_probes:
        probes = np.sort(np.random.default_rng(seed).choice(probes, max_probes, replace=False))
    return probes


def calibrate(
    matrix: np.ndarray,
    person_rows: np.ndarray,
    target_far: float = DEFAULT_TARGET_FAR,
    fallback_threshold: float = 0.0,
    max_probes: int = CALIBRATION_PROBES,
    seed: int = 0,
) -> OperatingPoint:
    """The operating point of a gallery (rows grouped by person, L2-normalized) for
    `target_far`, from the gallery's own faces (module docstring). With fewer than two people
    no stranger can be simulated, and with fewer than 1/target_far simulated strangers the
    quantile is not resolved: then `fallback_threshold` is the threshold, or its upper bound."""
    starts = person_starts(person_rows)
    rows = np.asarray(person_rows)
    if len(starts) < 2:
        return OperatingPoint(fallback_threshold, target_far, None, None, None, 0, 0,
                              calibrated=False)  # fmt: skip
    probes = sample_probes(len(matrix), max_probes, seed)
    stranger, enrolled_correct, enrolled_score = [], [], []
    step = max(1, CHUNK_CELLS // len(matrix))
    for begin in range(0, len(probes), step):
        chunk = probes[begin : begin + step]
        distances = 1.0 - matrix[chunk] @ matrix.T
        distances[np.arange(len(chunk)), chunk] = np.inf  # the face itself is left out
        per_person = person_distances(distances, starts)
        own = rows[chunk]
        has_other_face = np.isfinite(per_person[np.arange(len(chunk)), own])
        top, scores = score_people(per_person[has_other_face])
        enrolled_correct.append(top == own[has_other_face])
        enrolled_score.append(scores)
        per_person[np.arange(len(chunk)), own] = np.inf  # the whole person is left out
        stranger.append(score_people(per_person)[1])
    stranger_scores = np.sort(np.concatenate(stranger))
    # Accept at most floor(target_far * n) of the simulated strangers. Unresolved when that is
    # none, or when a simulated stranger (who sees one person fewer) lacks the full cohort a
    # real stranger has: then never looser than the fallback threshold.
    allowed = int(np.floor(target_far * len(stranger_scores)))
    resolved = allowed >= 1 and len(starts) > 1 + COHORT
    threshold = float(stranger_scores[max(allowed, 1) - 1])
    if not resolved:
        threshold = min(threshold, fallback_threshold)
    correct, scores = np.concatenate(enrolled_correct), np.concatenate(enrolled_score)
    has_enrolled = len(correct) > 0
    return OperatingPoint(
        threshold=round(threshold, 6),
        target_far=target_far,
        expected_far=round(float((stranger_scores <= threshold).mean()), 4),
        expected_dir=round(float((correct & (scores <= threshold)).mean()), 4)
        if has_enrolled else None,
        expected_rank1=round(float(correct.mean()), 4) if has_enrolled else None,
        stranger_trials=len(stranger_scores),
        enrolled_trials=len(correct),
        calibrated=resolved,
    )  # fmt: skip


def rank_people(
    matrix: np.ndarray, starts: np.ndarray, query: np.ndarray, count: int, candidate_rows=None
) -> tuple[np.ndarray, np.ndarray]:
    """The `count` nearest people to one query: (person indexes, distances), nearest first.
    `candidate_rows` (from an approximate index) limits the search to the people they belong
    to; each of those people is then measured on all of their faces."""
    if candidate_rows is None:
        per_person = person_distances((1.0 - matrix @ query)[None, :], starts)
        people, distances = best_people(per_person, count)
        return people[0], distances[0]
    ends = np.r_[starts[1:], len(matrix)]
    people = np.unique(np.searchsorted(starts, candidate_rows, side="right") - 1)
    local_rows = np.concatenate([np.arange(starts[p], ends[p]) for p in people])
    local_starts = np.r_[0, np.cumsum(ends[people] - starts[people])[:-1]]
    per_person = person_distances((1.0 - matrix[local_rows] @ query)[None, :], local_starts)
    order, distances = best_people(per_person, count)
    return people[order[0]], distances[0]
