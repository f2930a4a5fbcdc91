"""Validation + embedding throughput, ours (one process and a pool) against DeepFace.represent
on the same photos, and whether both answer alike (faces accepted, leave-one-out top-1)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import deepface_represent
from bench.photos import person_of
from facerec_pipeline.core.faces.engine import FaceEngine, l2_normalize
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.core.faces.validation import (
    WorkerPool,
    embed_crops,
    validate_photos,
)


def measure(engine: FaceEngine, photos: list[Path], work: Path, workers: int) -> dict:
    from deepface import DeepFace  # noqa: F401  (its first import takes seconds: before timing)

    gates = GateConfig()
    results = {}
    for label, count in (("ours_1_process", 1), (f"ours_{workers}_processes", workers)):
        start = time.perf_counter()
        with WorkerPool(engine, count) as pool:  # each timing includes starting its workers
            outcomes = list(validate_photos(engine, gates, photos, pool))
            crops = []
            for path, outcome in zip(photos, outcomes, strict=True):
                if outcome.status == "accepted":
                    crops.append(work / f"{label}_{path.stem}.png")
                    cv2.imwrite(str(crops[-1]), outcome.face.crop_bgr)
            vectors = np.stack(list(embed_crops(engine, crops, pool)))
            seconds = time.perf_counter() - start
        results[label] = {
            "seconds_per_photo": seconds / len(photos),
            "accepted": [
                p.name for p, o in zip(photos, outcomes, strict=True) if o.status == "accepted"
            ],
            "vectors": l2_normalize(vectors),
        }
    start = time.perf_counter()
    deepface_vectors, deepface_accepted = [], []
    for path in photos:
        faces = deepface_represent(path)
        real = [f for f in faces if f.get("face_confidence", 1) > 0]
        if len(real) >= 1:
            biggest = max(real, key=lambda f: f["facial_area"]["w"] * f["facial_area"]["h"])
            deepface_vectors.append(biggest["embedding"])
            deepface_accepted.append(path.name)
    results["deepface_represent"] = {
        "seconds_per_photo": (time.perf_counter() - start) / len(photos),
        "per_photo": photos,
        "accepted": deepface_accepted,
        "vectors": l2_normalize(np.asarray(deepface_vectors, dtype=np.float32)),
    }
    return results


def loo_top1(vectors: np.ndarray, labels: list[str]) -> list[str]:
    distances = 1.0 - vectors @ vectors.T
    np.fill_diagonal(distances, np.inf)
    return [labels[int(i)] for i in distances.argmin(axis=1)]


def section(speed: dict, workers: int) -> list[str]:
    """Its part of BENCHMARKS.md."""
    deepface = speed["deepface_represent"]
    lines = [
        "## Validation + embedding throughput (same photos, Dlib model, dlib detector)",
        "",
        f"{len(speed['deepface_represent']['per_photo'])} photos: the packaged test photos and "
        "scikit-image's astronaut, each also mirrored, and variants of them (turned, cropped, "
        "re-encoded). Our timings include starting the worker processes.",
        "",
        "| pipeline | s/photo | photos/s | speed-up vs DeepFace | faces accepted |",
        "|---|---|---|---|---|",
    ]
    for name, result in speed.items():
        ratio = deepface["seconds_per_photo"] / result["seconds_per_photo"]
        lines.append(
            f"| {name} | {result['seconds_per_photo']:.3f} | "
            f"{1 / result['seconds_per_photo']:.2f} | {ratio:.1f}x | "
            f"{len(result['accepted'])} |"
        )
    ours = speed[f"ours_{workers}_processes"]
    same_accept = sorted(ours["accepted"]) == sorted(deepface["accepted"])
    labels_ours = [person_of(Path(n)) for n in ours["accepted"]]
    labels_deepface = [person_of(Path(n)) for n in deepface["accepted"]]
    top_ours = loo_top1(ours["vectors"], labels_ours)
    top_deepface = loo_top1(deepface["vectors"], labels_deepface)
    common = [n for n in ours["accepted"] if n in deepface["accepted"]]
    agree = sum(
        top_ours[ours["accepted"].index(n)] == top_deepface[deepface["accepted"].index(n)]
        for n in common
    )
    lines += [
        "",
        f"Photos: {len(ours['accepted'])} accepted of the set by ours; DeepFace found a face in "
        f"{len(deepface['accepted'])}. Same photos accepted: {same_accept}"
        + (
            ""
            if same_accept
            else f" (only ours: {sorted(set(ours['accepted']) - set(deepface['accepted']))}; "
            f"only DeepFace: {sorted(set(deepface['accepted']) - set(ours['accepted']))})"
        )
        + ".",
        f"Leave-one-out top-1 answers (each photo against the others): the same person in "
        f"{agree} of {len(common)} photos both accepted; accuracy ours "
        f"{np.mean([a == b for a, b in zip(top_ours, labels_ours, strict=True)]):.2f}, DeepFace "
        f"{np.mean([a == b for a, b in zip(top_deepface, labels_deepface, strict=True)]):.2f}.",
    ]
    return lines


def goals(speed: dict, workers: int) -> list[tuple[str, str, str, bool]]:
    """Its rows of the goals table: (measure, goal, measured, met)."""
    ours = speed[f"ours_{workers}_processes"]
    speedup = speed["deepface_represent"]["seconds_per_photo"] / ours["seconds_per_photo"]
    return [("throughput vs DeepFace.represent", ">= 20x", f"{speedup:.1f}x", speedup >= 20)]
