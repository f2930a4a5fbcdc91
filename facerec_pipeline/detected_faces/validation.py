"""Validate one photo: detect faces, apply the quality gates, cut the accepted face."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerec_pipeline.detected_faces.quality_gates import GateConfig, judge_faces
from facerec_pipeline.face_engine.engine import DetectedFace, FaceEngine
from facerec_pipeline.files import write_atomically
from facerec_pipeline.raw_images.image_files import ImageRejected, load_rgb


@dataclass(frozen=True)
class PhotoOutcome:
    status: str  # accepted | rejected
    rejection_reason: str | None = None
    rejection_detail: str | None = None
    faces_found: int = 0
    background_faces: int = 0
    face: DetectedFace | None = None
    blur_score: float | None = None


def validate_photo(engine: FaceEngine, gates: GateConfig, path: Path) -> PhotoOutcome:
    try:
        rgb = load_rgb(path)
    except ImageRejected as rejected:
        return PhotoOutcome("rejected", rejected.reason, rejected.detail)
    except FileNotFoundError:
        return PhotoOutcome("rejected", "unreadable_image", f"file {path} is missing")
    faces = engine.detect(rgb)
    decision = judge_faces(faces, gates)
    face = faces[decision.face_index] if decision.face_index is not None else None
    return PhotoOutcome(
        "accepted" if decision.accepted else "rejected",
        decision.reason,
        decision.detail,
        decision.faces_found,
        decision.background_faces,
        face,
        decision.blur_score,
    )


def save_crop(crop_bgr: np.ndarray, target: Path) -> str:
    """Write a face crop losslessly (PNG) and return its sha256."""
    ok, encoded = cv2.imencode(".png", crop_bgr)
    if not ok:
        raise ValueError(f"could not encode the face crop for {target}")
    data = encoded.tobytes()
    write_atomically(target, data)
    return hashlib.sha256(data).hexdigest()


def read_crop(path: Path) -> np.ndarray:
    crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if crop is None:
        raise FileNotFoundError(f"face crop {path} is missing or unreadable")
    return crop


# Parallel validation: dlib holds the GIL, so threads do not help; worker processes do. Each
# worker loads its own engine once (a few seconds), so small batches stay in this process.
MIN_PHOTOS_PER_WORKER = 16  # below this, starting workers costs more than it saves
_worker: dict = {}


def _start_worker(config, models_dir: str, gates: GateConfig) -> None:
    _worker["engine"] = FaceEngine(config, Path(models_dir))
    _worker["gates"] = gates


def _validate_in_worker(path: Path) -> PhotoOutcome:
    return validate_photo(_worker["engine"], _worker["gates"], path)


def _embed_in_worker(path: Path):
    engine = _worker["engine"]
    return engine.embed([read_crop(path)])[0]


def _parallel(engine: FaceEngine, gates: GateConfig | None, fn, items: list, workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker,
        initargs=(engine.config, str(engine.models_dir), gates),
    ) as pool:  # fmt: skip
        yield from pool.map(fn, items, chunksize=2)


def validate_photos(engine: FaceEngine, gates: GateConfig, paths: list[Path], workers: int = 1):
    """validate_photo over `paths`, in order, on up to `workers` processes."""
    if workers <= 1 or len(paths) < MIN_PHOTOS_PER_WORKER * workers:
        return (validate_photo(engine, gates, path) for path in paths)
    return _parallel(engine, gates, _validate_in_worker, paths, workers)


def embed_crops(engine: FaceEngine, paths: list[Path], workers: int = 1):
    """Embeddings of the crops at `paths`, in order, on up to `workers` processes."""
    if workers <= 1 or len(paths) < MIN_PHOTOS_PER_WORKER * workers:
        return (engine.embed([read_crop(path)])[0] for path in paths)
    return _parallel(engine, None, _embed_in_worker, paths, workers)
