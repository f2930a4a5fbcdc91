"""Validation + embedding throughput, each face model (one process and a pool) against
DeepFace.represent on the same photos, and whether the default model and DeepFace answer alike
(faces accepted, leave-one-out top-1)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import deepface_represent
from bench.photos import person_of
from facerec_pipeline.core.faces.engine import l2_normalize
from facerec_pipeline.core.faces.validation import (
    WorkerPool,
    embed_crops,
    validate_photos,
)


def engine_seconds(engine, photos: list[Path]) -> dict:
    """Detection then embedding of the largest face, per photo, on one thread (OpenCV's and
    BLAS's), the engine warm and the photos already decoded: the face engine's own cost, as
    `recognize` pays it per photo."""
    from threadpoolctl import threadpool_limits

    from facerec_pipeline.core.images.image_files import load_rgb

    images = [load_rgb(path) for path in photos]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            detect = embed = 0.0
            for image in images:
                start = time.perf_counter()
                faces = engine.detect(image)
                found = time.perf_counter()
                if faces:
                    engine.embed([faces[0].crop_bgr])
                detect += found - start
                embed += time.perf_counter() - found
    finally:
        cv2.setNumThreads(threads)
    return {"detect": detect / len(images), "embed": embed / len(images)}


def measure(models: dict, photos: list[Path], work: Path, workers: int) -> dict:
    """Each face model's pipeline (validation, then embedding of the accepted crops) in one
    process and in a pool, then DeepFace.represent, on the same photos. `models`: name ->
    (FaceModel, its FaceEngine), the project's default first."""
    from deepface import DeepFace  # noqa: F401  (its first import takes seconds: before timing)

    results = {}
    for name, (model, engine) in models.items():
        results[f"{name}_engine"] = {"model": name, **engine_seconds(engine, photos)}
        for count in (1, workers):
            label = f"{name}_{count}_process" + ("es" if count > 1 else "")
            start = time.perf_counter()
            with WorkerPool(engine, count) as pool:  # each timing includes starting its workers
                outcomes = list(validate_photos(engine, model.gates, photos, pool))
                crops = []
                for path, outcome in zip(photos, outcomes, strict=True):
                    if outcome.status == "accepted":
                        crops.append(work / f"{label}_{path.stem}.png")
                        cv2.imwrite(str(crops[-1]), outcome.face.crop_bgr)
                vectors = np.stack(list(embed_crops(engine, crops, pool)))
                seconds = time.perf_counter() - start
            results[label] = {
                "model": name,
                "processes": count,
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
        "model": "deepface",
        "processes": 1,
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
    pipelines = {name: result for name, result in speed.items() if not name.endswith("_engine")}
    default = next(iter(pipelines.values()))["model"]
    lines = [
        "## Validation + embedding throughput (same photos; each face model, and DeepFace "
        "with its Dlib model and dlib detector)",
        "",
        f"{len(speed['deepface_represent']['per_photo'])} photos (1-3 MP): the packaged test "
        "photos and scikit-image's astronaut, each also mirrored, and variants of them (turned, "
        "cropped, re-encoded). Each pipeline reads the photo, detects, applies its model's "
        "gates, cuts and writes the crop, then embeds it; our timings include starting the "
        "worker processes.",
        "",
        "| pipeline | s/photo | photos/s | speed-up vs DeepFace | faces accepted |",
        "|---|---|---|---|---|",
    ]
    for name, result in pipelines.items():
        ratio = deepface["seconds_per_photo"] / result["seconds_per_photo"]
        lines.append(
            f"| {name} | {result['seconds_per_photo']:.3f} | "
            f"{1 / result['seconds_per_photo']:.2f} | {ratio:.1f}x | "
            f"{len(result['accepted'])} |"
        )
    ours = speed[f"{default}_{workers}_processes"]
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
        f"Photos: {len(ours['accepted'])} accepted of the set by {default}; DeepFace found a "
        f"face in {len(deepface['accepted'])}. Same photos accepted: {same_accept}"
        + (
            ""
            if same_accept
            else f" (only ours: {sorted(set(ours['accepted']) - set(deepface['accepted']))}; "
            f"only DeepFace: {sorted(set(deepface['accepted']) - set(ours['accepted']))})"
        )
        + ".",
        f"Leave-one-out top-1 answers (each photo against the others): the same person in "
        f"{agree} of {len(common)} photos both accepted; accuracy {default} "
        f"{np.mean([a == b for a, b in zip(top_ours, labels_ours, strict=True)]):.2f}, DeepFace "
        f"{np.mean([a == b for a, b in zip(top_deepface, labels_deepface, strict=True)]):.2f}.",
        "",
        "The face engine alone, one thread, on the same photos already decoded (detection, then "
        "embedding of the largest face; what `recognize` pays per photo):",
        "",
        "| model | detection ms | embedding ms | both ms |",
        "|---|---|---|---|",
    ]
    for name, result in speed.items():
        if name.endswith("_engine"):
            lines.append(
                f"| {name.removesuffix('_engine')} | {1000 * result['detect']:.1f} | "
                f"{1000 * result['embed']:.1f} | "
                f"{1000 * (result['detect'] + result['embed']):.1f} |"
            )
    return lines


def goals(speed: dict, workers: int) -> list[tuple[str, str, str, bool]]:
    """Its rows of the goals table: (measure, goal, measured, met)."""
    default = next(iter(speed.values()))["model"]
    ours = speed[f"{default}_{workers}_processes"]
    speedup = speed["deepface_represent"]["seconds_per_photo"] / ours["seconds_per_photo"]
    rows = [
        (
            f"throughput vs DeepFace.represent ({default}, {workers} processes)",
            ">= 20x",
            f"{speedup:.1f}x",
            speedup >= 20,
        )
    ]
    if f"dlib_{workers}_processes" in speed and default != "dlib":
        faster = speed[f"dlib_{workers}_processes"]["seconds_per_photo"] / ours["seconds_per_photo"]
        rows.append(
            (
                f"validation + embedding per photo, {default} vs dlib, {workers} processes "
                "(issue 20)",
                ">= 2x",
                f"{faster:.1f}x",
                faster >= 2,
            )
        )
    return rows
