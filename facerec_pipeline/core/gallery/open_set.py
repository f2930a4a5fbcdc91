"""Open-set 1:N decisions: name the right person, or say "nobody". Pure numpy, no Dagster.

A domain holds hundreds to thousands of people, so the nearest face alone accepts far too many
strangers at any 1:1 threshold. The rule, chosen on the LFW development set (BENCHMARKS.md):

- a person's distance to a probe is the mean of the cosine distances of that person's
  `nearest_count(n)` nearest faces: 1 of 1, 2 of 2 to 7, then about a quarter of n (3 of 8, 11 of
  40). Taking a fixed share keeps people with many photos from drawing strangers to them: with
  the mean of the 2 nearest, people with 10+ photos were 8% of the dev gallery and the nearest
  person of 27.5% of the strangers. It beat the nearest face, the mean face and the 2 nearest;
- the decision score is `d1 - (mean(d2..d4) - d1)`: the best person's distance less its margin
  over the next COHORT people. A stranger tends to sit about as near to several people; someone
  enrolled stands out from them. It beat the bare distance, the ratio d1/d2 and z/t-norms;
- a name is given when the score is at or under the gallery's threshold.

The threshold is calibrated when a version is built, from the gallery alone (no outside labels):
each gallery face, with its own person left out of the gallery, plays a stranger. The threshold
names as many of them as it can while the one-sided 95% (Clopper-Pearson) upper bound of the
share named stays at or under `target_far`: the target is a limit, not an average, so a new set
of strangers exceeds it less often (12% of 16 half-galleries of the dev set, against 31% for
the plain quantile; BENCHMARKS.md). The same pass, with only the face itself left out,
estimates the DIR (right name given) and rank-1 a user can expect.

Galleries are searched with the rows of one person contiguous (`person_rows` non-decreasing), as
the batch writer lays them out. Versions calibrated before this rule (`nearest_share` 0 in
their operating point) keep being searched with the mean of the 2 nearest faces they were
calibrated with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

COHORT = 3  # people after the best whose mean distance sets the margin
NEAREST_SHARE = 0.25  # share of a person's faces (nearest first) averaged into their distance
CONFIDENCE = 0.95  # the target FAR holds at this one-sided confidence on simulated strangers
RULE = (
    "mean of the max(2, 1 + n/4) nearest of a person's n faces; score d1 - (mean(d2..d4) - d1); "
    "threshold: 95% upper bound of the simulated strangers named <= target FAR"
)


def rule_text(share: float) -> str:
    """The rule a version is calibrated with, in words (RULE at the default share)."""
    if share == NEAREST_SHARE:
        return RULE
    return RULE.replace("1 + n/4", f"1 + {share:g}n")


LEGACY_RULE = "mean of the 2 nearest faces per person; score d1 - (mean(d2..d4) - d1)"
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
    rule: str = LEGACY_RULE
    # False: too few simulated strangers to resolve target_far; the threshold is then at most
    # the fallback (the model's 1:1 verification threshold)
    calibrated: bool = True
    # how many of a person's faces make their distance (nearest_count); 0: the 2 nearest, as
    # versions calibrated before the share was introduced were
    nearest_share: float = 0.0
    far_upper_bound: float | None = None  # one-sided CONFIDENCE bound of expected_far

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def described(point: OperatingPoint) -> str:
    """The operating point in words (the gallery report): what it promises when calibrated, and
    plainly that it promises no false-accept rate when the gallery was too small to calibrate."""
    if point.calibrated:
        return (
            f"a name is given when the score is <= {point.threshold:.4f}, calibrated for at most "
            f"{point.target_far:.1%} false accepts on {point.stranger_trials} simulated strangers "
            f"(a share of {point.expected_far} named, upper bound {point.far_upper_bound}); "
            f"expected DIR {point.expected_dir}, rank-1 {point.expected_rank1} over "
            f"{point.enrolled_trials} faces"
        )
    if not point.stranger_trials:
        why, how = "one person: no stranger can be simulated", "the model's 1:1 threshold"
    else:
        reached = (
            f"; the best bound they show is {point.far_upper_bound:.1%}"
            if point.far_upper_bound is not None
            else ""
        )
        why = (
            f"its {point.stranger_trials} simulated strangers cannot show at most "
            f"{point.target_far:.1%} false accepts{reached}"
        )
        how = (
            f"the {point.target_far:.1%} quantile of their scores, never looser than the model's "
            "1:1 threshold"
        )
    return (
        f"NOT CALIBRATED, the gallery is too small ({why}): a name is given when the score is <= "
        f"{point.threshold:.4f} ({how}), and no false-accept rate is promised; add people"
    )


def described_briefly(point: OperatingPoint) -> str:
    """One cell of `facerec gallery list`."""
    if not point.calibrated:
        return f"score <= {point.threshold:.4f}, NOT calibrated (gallery too small)"
    limit = "<= " if point.far_upper_bound is not None else ""  # a bound, not a quantile
    return (
        f"score <= {point.threshold:.4f} for FAR {limit}{point.target_far:.1%}, "
        f"expected DIR {point.expected_dir}"
    )


def person_starts(person_rows: np.ndarray) -> np.ndarray:
    """First row of each person; raises if a person's rows are not contiguous."""
    rows = np.asarray(person_rows)
    if len(rows) and (np.any(np.diff(rows) < 0) or rows[0] != 0 or np.any(np.diff(rows) > 1)):
        raise ValueError("gallery rows must be grouped by person (person_rows 0, 0, 1, 2, 2, ...)")
    return np.flatnonzero(np.r_[True, np.diff(rows) != 0]) if len(rows) else np.zeros(0, int)


def nearest_count(faces: np.ndarray, share: float) -> np.ndarray:
    """How many of a person's nearest faces make their distance, per count of faces: all of 1,
    2 of 2 or more, and from 8 faces on 1 + floor(share * faces) (share 0: always 2)."""
    faces = np.asarray(faces)
    return np.minimum(faces, np.maximum(2, 1 + np.floor(share * faces).astype(int)))


def person_distances(
    distances: np.ndarray, starts: np.ndarray, share: float = NEAREST_SHARE
) -> np.ndarray:
    """(probes x faces) cosine distances -> (probes x people): the mean of each person's
    `nearest_count` nearest faces. Faces at inf (left out) do not count: a person with one face
    left in gets its distance, with none inf. People with the same number of faces are
    measured together, so the cost is one sort per distinct size."""
    sizes = np.diff(np.r_[starts, distances.shape[1]])
    result = np.empty((distances.shape[0], len(starts)), dtype=distances.dtype)
    for size in np.unique(sizes):
        people = np.flatnonzero(sizes == size)
        columns = starts[people][:, None] + np.arange(size)
        nearest = np.sort(distances[:, columns], axis=2)  # probes x people x faces
        finite = np.isfinite(nearest)
        present = finite.sum(axis=2)
        take = nearest_count(np.maximum(present, 1), share)
        sums = np.cumsum(np.where(finite, nearest, 0.0), axis=2)
        mean = np.take_along_axis(sums, take[..., None] - 1, axis=2)[..., 0] / take
        result[:, people] = np.where(present > 0, mean, np.inf)
    return result


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


def far_upper_bound(named: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as `named` of `trials`."""
    return 1.0 if named >= trials else float(beta.ppf(confidence, named + 1, trials - named))


def strangers_allowed(trials: int, target_far: float, confidence: float = CONFIDENCE) -> int:
    """The most simulated strangers a threshold may name with the upper bound of the rate at or
    under target_far (0 when not one can: fewer than about 475 trials at 1%)."""
    allowed = int(np.floor(target_far * trials))
    while allowed > 0 and far_upper_bound(allowed, trials, confidence) > target_far:
        allowed -= 1
    return allowed


def calibrate(
    matrix: np.ndarray,
    person_rows: np.ndarray,
    target_far: float = DEFAULT_TARGET_FAR,
    fallback_threshold: float = 0.0,
    max_probes: int = CALIBRATION_PROBES,
    seed: int = 0,
    share: float = NEAREST_SHARE,
) -> OperatingPoint:
    """The operating point of a gallery (rows grouped by person, L2-normalized) for
    `target_far`, from the gallery's own faces (module docstring). With fewer than two people
    no stranger can be simulated, and with too few simulated strangers to bound the rate under
    target_far it is not resolved: then the plain target_far quantile, never looser than
    `fallback_threshold`, is the threshold."""
    starts = person_starts(person_rows)
    rows = np.asarray(person_rows)
    if len(starts) < 2:
        return OperatingPoint(
            threshold=fallback_threshold,
            target_far=target_far,
            expected_far=None,
            expected_dir=None,
            expected_rank1=None,
            stranger_trials=0,
            enrolled_trials=0,
            rule=rule_text(share),
            calibrated=False,
            nearest_share=share,
        )
    probes = sample_probes(len(matrix), max_probes, seed)
    stranger, enrolled_correct, enrolled_score = [], [], []
    step = max(1, CHUNK_CELLS // len(matrix))
    for begin in range(0, len(probes), step):
        chunk = probes[begin : begin + step]
        distances = 1.0 - matrix[chunk] @ matrix.T
        distances[np.arange(len(chunk)), chunk] = np.inf  # the face itself is left out
        per_person = person_distances(distances, starts, share)
        own = rows[chunk]
        has_other_face = np.isfinite(per_person[np.arange(len(chunk)), own])
        top, scores = score_people(per_person[has_other_face])
        enrolled_correct.append(top == own[has_other_face])
        enrolled_score.append(scores)
        per_person[np.arange(len(chunk)), own] = np.inf  # the whole person is left out
        stranger.append(score_people(per_person)[1])
    stranger_scores = np.sort(np.concatenate(stranger))
    # Unresolved when no count of named strangers can be shown to stay under the target, or
    # when a simulated stranger (who sees one person fewer) lacks the full cohort a real
    # stranger has: then the plain quantile, never looser than the fallback threshold.
    allowed = strangers_allowed(len(stranger_scores), target_far)
    resolved = allowed >= 1 and len(starts) > 1 + COHORT
    if resolved:
        threshold = float(stranger_scores[allowed - 1])
    else:
        plain = max(int(np.floor(target_far * len(stranger_scores))), 1)
        threshold = min(float(stranger_scores[plain - 1]), fallback_threshold)
    named = int(np.sum(stranger_scores <= threshold))
    correct, scores = np.concatenate(enrolled_correct), np.concatenate(enrolled_score)
    has_enrolled = len(correct) > 0
    return OperatingPoint(
        threshold=round(threshold, 6),
        target_far=target_far,
        expected_far=round(named / len(stranger_scores), 4),
        expected_dir=round(float((correct & (scores <= threshold)).mean()), 4)
        if has_enrolled
        else None,
        expected_rank1=round(float(correct.mean()), 4) if has_enrolled else None,
        stranger_trials=len(stranger_scores),
        enrolled_trials=len(correct),
        rule=rule_text(share),
        calibrated=resolved,
        nearest_share=share,
        far_upper_bound=round(far_upper_bound(named, len(stranger_scores)), 4),
    )


def rank_people(
    matrix: np.ndarray,
    starts: np.ndarray,
    query: np.ndarray,
    count: int,
    candidate_rows=None,
    share: float = NEAREST_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """The `count` nearest people to one query: (person indexes, distances), nearest first.
    `candidate_rows` (from an approximate index) limits the search to the people they belong
    to; each of those people is then measured on all of their faces. `share`: the operating
    point's (person_distances)."""
    if candidate_rows is None:
        per_person = person_distances((1.0 - matrix @ query)[None, :], starts, share)
        people, distances = best_people(per_person, count)
        return people[0], distances[0]
    ends = np.r_[starts[1:], len(matrix)]
    people = np.unique(np.searchsorted(starts, candidate_rows, side="right") - 1)
    local_rows = np.concatenate([np.arange(starts[p], ends[p]) for p in people])
    local_starts = np.r_[0, np.cumsum(ends[people] - starts[people])[:-1]]
    per_person = person_distances((1.0 - matrix[local_rows] @ query)[None, :], local_starts, share)
    order, distances = best_people(per_person, count)
    return people[order[0]], distances[0]
