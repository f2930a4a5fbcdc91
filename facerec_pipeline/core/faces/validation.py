"""Validate one photo: detect faces, apply the quality gates, cut the accepted face."""

from __future__ import annotations

import atexit
import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from facerec_pipeline.core.faces.engine import DetectedFace, FaceEngine
from facerec_pipeline.core.faces.quality_gates import GateConfig, judge_faces
from facerec_pipeline.core.files import write_atomically
from facerec_pipeline.core.images.image_files import ImageRejected, load_bgr, load_rgb


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
    """A stored face crop (BGR), read through the same limits as every photo: a damaged crop is
    ImageRejected, a missing one FileNotFoundError."""
    try:
        return load_bgr(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"face crop {path} is missing") from error


# Parallel validation: dlib holds the GIL, so threads do not help; worker processes do. Each
# worker loads its own engine once (about 1 s), so small batches stay in this process, the pool
# stays up for the next stage in the same process (embedding follows validation in one run), and
# this process takes photos from the end of the list while the workers start.
MIN_PHOTOS_PER_WORKER = 16  # below this, starting workers costs more than it saves
_worker: dict = {}
_pools: dict = {}


def _start_worker(config, models_dir: str) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per worker: the workers already fill the cores
    _worker["engine"] = FaceEngine(config, Path(models_dir))


def _in_worker(fn, item):
    return fn(_worker["engine"], item)


def _validate(gates: GateConfig, engine: FaceEngine, path: Path) -> PhotoOutcome:
    return validate_photo(engine, gates, path)


def _embed(engine: FaceEngine, path: Path) -> np.ndarray:
    return engine.embed([read_crop(path)])[0]


def close_worker_pools() -> None:
    """Stop the worker processes; the next parallel call starts new ones."""
    while _pools:
        _, pool = _pools.popitem()
        pool.shutdown(cancel_futures=True)


atexit.register(close_worker_pools)


def _parallel(engine: FaceEngine, fn, items: list, workers: int):
    """fn(engine, item) for each item, in order: on the pool, and here until a worker answers."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    key = (engine.config, str(engine.models_dir), workers)
    if key not in _pools:
        _pools[key] = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded parent
            initializer=_start_worker,
            initargs=(engine.config, str(engine.models_dir)),
        )
    futures = [_pools[key].submit(_in_worker, fn, item) for item in items]
    done_here: dict[int, object] = {}
    try:
        for index in range(len(items) - 1, 0, -1):
            if any(future.done() for future in futures[:workers]) or not futures[index].cancel():
                break  # the workers are up: leave the rest to them
            done_here[index] = fn(engine, items[index])
        for index in range(len(items)):
            future, futures[index] = futures[index], None  # keep no result once handed on
            yield done_here.pop(index) if index in done_here else future.result()
    except BaseException:
        # A worker that died (out of memory, say) breaks the pool; never reuse a pool mid-failure.
        _pools.pop(key).shutdown(wait=False, cancel_futures=True)
        raise


def _use_workers(items: list, workers: int) -> bool:
    return workers > 1 and len(items) >= MIN_PHOTOS_PER_WORKER * workers


def validate_photos(engine: FaceEngine, gates: GateConfig, paths: list[Path], workers: int = 1):
    """validate_photo over `paths`, in order, on up to `workers` processes."""
    if not _use_workers(paths, workers):
        return (validate_photo(engine, gates, path) for path in paths)
    return _parallel(engine, partial(_validate, gates), paths, workers)


def embed_crops(engine: FaceEngine, paths: list[Path], workers: int = 1):
    """Embeddings of the crops at `paths`, in order, on up to `workers` processes."""
    if not _use_workers(paths, workers):
        return (_embed(engine, path) for path in paths)
    return _parallel(engine, _embed, paths, workers)
