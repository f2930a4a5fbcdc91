"""Score a domain's production recognizer on labelled probe photos: enrolled people's photos
named `<Person>__<file>` (the right answer is <Person>) and, optionally, photos of people never
enrolled (the right answer is "nobody"). Closed-set rank-1, DIR and FAR at the product's own
decision rule, the DIR-against-FAR curve, time per photo. No Dagster here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.core.images.image_files import IMAGE_SUFFIXES, ImageRejected
from facerec_pipeline.core.names import normalize_name
from facerec_pipeline.core.recognition.recognizer import Recognizer

PROBE_SEPARATOR = "__"
CURVE_FARS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class ProbeResult:
    path: str
    truth: str | None  # normalized name, None for a never-enrolled person
    nearest: str | None  # closed-set answer: the nearest person, None when no face was found
    named: str | None  # the product's answer
    score: float  # decision score of the nearest person (inf when no face)
    seconds: float
    error: str | None = None


def photos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"probe folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def probe_truth(path: Path) -> str:
    """`George_W_Bush__George_W_Bush_0530.jpg` -> `george_w_bush`."""
    if PROBE_SEPARATOR not in path.name:
        raise ValueError(
            f"probe {path.name!r} is not named <Person>{PROBE_SEPARATOR}<file>: the part before "
            f"{PROBE_SEPARATOR!r} names who is in the photo"
        )
    return normalize_name(path.name.split(PROBE_SEPARATOR, 1)[0])


def recognize_probe(recognizer: Recognizer, path: Path, truth: str | None) -> ProbeResult:
    """The largest face of the photo is its subject."""
    started = time.perf_counter()
    try:
        faces = recognizer.recognize_image(path)["faces"]
        error = None
    except (ImageRejected, FileNotFoundError) as problem:
        faces, error = [], str(problem)
    seconds = time.perf_counter() - started
    if not faces:
        return ProbeResult(str(path), truth, None, None, float("inf"), seconds, error or "no_face")
    face = faces[0]
    decision = face["decision"]
    named = face["identity"]["normalized_name"] if face["identity"] else None
    return ProbeResult(str(path), truth, decision["best"], named, decision["score"], seconds)


def evaluate_probes(
    recognizer: Recognizer,
    probes: list[Path],
    unknown: list[Path],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], list[ProbeResult]]:
    truths = [probe_truth(path) for path in probes]  # fail on a bad name before any work
    jobs = list(zip(probes, truths, strict=True)) + [(path, None) for path in unknown]
    results = []
    for done, (path, truth) in enumerate(jobs, start=1):
        results.append(recognize_probe(recognizer, path, truth))
        if progress:
            progress(done, len(jobs))
    return figures_of(results, recognizer), results


def figures_of(results: list[ProbeResult], recognizer: Recognizer | None = None) -> dict:
    enrolled = [r for r in results if r.truth is not None]
    strangers = [r for r in results if r.truth is None]
    enrolled_names = None
    if recognizer is not None:
        enrolled_names = {p["normalized_name"] for g in recognizer.galleries for p in g.people}
    figures: dict[str, Any] = {"probes": len(enrolled), "unknown_probes": len(strangers)}
    if enrolled_names is not None:
        figures["probes_of_people_not_in_gallery"] = sum(
            1 for r in enrolled if r.truth not in enrolled_names
        )
    seconds = np.asarray([r.seconds for r in results])
    if len(seconds):
        figures["seconds_per_photo_median"] = round(float(np.median(seconds)), 4)
        figures["seconds_per_photo_p95"] = round(float(np.quantile(seconds, 0.95)), 4)
        figures["seconds_per_photo_mean"] = round(float(seconds.mean()), 4)
    right = np.asarray([r.nearest == r.truth for r in enrolled], dtype=bool)
    named_right = np.asarray([r.named == r.truth for r in enrolled], dtype=bool)
    named_wrong = np.asarray([r.named not in (None, r.truth) for r in enrolled], dtype=bool)
    stranger_named = np.asarray([r.named is not None for r in strangers], dtype=bool)
    if len(enrolled):
        figures["rank1"] = round(float(right.mean()), 4)
        figures["dir"] = round(float(named_right.mean()), 4)
        figures["wrong_name_rate"] = round(float(named_wrong.mean()), 4)
        figures["no_face_probes"] = sum(1 for r in enrolled if r.nearest is None)
    if len(strangers):
        figures["far"] = round(float(stranger_named.mean()), 4)
        figures["no_face_unknown"] = sum(1 for r in strangers if r.nearest is None)
    if len(enrolled) and len(strangers):
        figures["curve"] = dir_far_curve(results)
    return figures


def dir_far_curve(results: list[ProbeResult]) -> list[dict[str, float]]:
    """DIR at the score threshold that lets through at most each FAR of CURVE_FARS (the
    product's rule with other thresholds: what the operating point trades)."""
    enrolled = [r for r in results if r.truth is not None]
    strangers = np.sort([r.score for r in results if r.truth is None])
    right = np.asarray([r.nearest == r.truth for r in enrolled], dtype=bool)
    scores = np.asarray([r.score for r in enrolled])
    curve = []
    for far in CURVE_FARS:
        allowed = int(np.floor(far * len(strangers)))
        # accept scores strictly below the (allowed+1)-th best stranger score
        limit = strangers[allowed] if allowed < len(strangers) else np.inf
        accepted = scores < limit if np.isfinite(limit) else np.isfinite(scores)
        actual = (
            float(np.mean(strangers < limit))
            if np.isfinite(limit)
            else float(np.mean(np.isfinite(strangers)))
        )
        curve.append(
            {
                "far": round(actual, 4),
                "dir": round(float((right & accepted).mean()), 4),
                "far_limit": far,
            }
        )
    return curve
