"""Validate one photo: detect faces, apply the quality gates, cut the accepted face."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from facerec_pipeline.core.faces.engine import DetectedFace, EngineConfig, FaceEngine
from facerec_pipeline.core.faces.quality_gates import GateConfig, judge_faces
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


def read_crop(path: Path) -> np.ndarray:
    """A stored face crop (BGR), read through the same limits as every photo: a damaged crop is
    ImageRejected, a missing one FileNotFoundError."""
    try:
        return load_bgr(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"face crop {path} is missing") from error


# Parallel validation: dlib holds the GIL, so threads do not help; worker processes do. Each
# worker loads its own engine once (about 1 s), so small batches stay in this process, a pool's
# processes stay up for the next stage of the same run (embedding follows validation), and this
# process takes photos from the end of the list while the workers start.
MIN_PHOTOS_PER_WORKER = 16  # below this, starting workers costs more than it saves
# SFace: OpenCV already runs YuNet and SFace on every core of this process, so workers gain only
# the Python around them (decoding, gates, files), and their start costs more than a small batch
# (2 cores, 1-3 MP photos: 44 ms a photo with 2 workers against 32 in this process for 128
# photos, 33 against 35 for 256, 25 against 28 for 512; BENCHMARKS.md).
SFACE_MIN_PHOTOS_PER_WORKER = 128


def min_photos_per_worker(config: EngineConfig) -> int:
    """Photos per worker from which a batch of `config`'s engine goes to worker processes."""
    return SFACE_MIN_PHOTOS_PER_WORKER if config.uses_sface else MIN_PHOTOS_PER_WORKER


# In a worker process only: the engine its initializer loaded (the parent never sets it).
_worker: dict = {}


def _start_worker(config, models_dir: str) -> None:
    from threadpoolctl import threadpool_limits

    # One thread per worker (BLAS, OpenCV's own pool): the workers already fill the cores.
    threadpool_limits(1)
    cv2.setNumThreads(1)
    _worker["engine"] = FaceEngine(config, Path(models_dir))


def _in_worker(fn, item):
    return fn(_worker["engine"], item)


def _validate(gates: GateConfig, engine: FaceEngine, path: Path) -> PhotoOutcome:
    return validate_photo(engine, gates, path)


def _embed(engine: FaceEngine, path: Path) -> np.ndarray:
    return engine.embed([read_crop(path)])[0]


class WorkerPool:
    """Up to `workers` processes that detect and embed as `engine` does, owned by whoever made
    it (the face engine resource, for the length of a run; `with WorkerPool(...)` elsewhere).
    Its processes start at the first batch large enough to need them and stay up for the next;
    close() stops them, and a closed pool starts no more. A batch that fails (a worker that
    died, say) stops the processes; the next batch starts new ones."""

    def __init__(self, engine: FaceEngine, workers: int, min_per_worker: int | None = None):
        self.engine = engine
        self.workers = workers
        # Photos per worker from which a batch goes to the workers (min_photos_per_worker).
        self.min_per_worker = min_per_worker or min_photos_per_worker(engine.config)
        self.closed = False
        self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """The worker processes running now (none before the first large batch)."""
        return list(self._executor._processes) if self._executor is not None else []

    def serves(self, engine: FaceEngine, items: list) -> bool:
        """Whether `items` go to the workers: enough of them, and the workers' engine is
        `engine` (same configuration and models folder)."""
        if (engine.config, engine.models_dir) != (self.engine.config, self.engine.models_dir):
            raise ValueError(
                f"this worker pool runs {self.engine.config} from {self.engine.models_dir}, "
                f"not {engine.config} from {engine.models_dir}"
            )
        return self.workers > 1 and len(items) >= self.min_per_worker * self.workers

    def close(self) -> None:
        """Stop the worker processes (waiting for them); the pool starts no more."""
        self.closed = True
        self._stop(wait=True)

    def _stop(self, wait: bool) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.closed:
            raise RuntimeError("this worker pool is closed: its owner's run has ended")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded parent
                initializer=_start_worker,
                initargs=(self.engine.config, str(self.engine.models_dir)),
            )
        return self._executor

    def map(self, fn, items: list):
        """fn(engine, item) for each item, in order: on the workers, and here until one
        answers."""
        futures = [self._start().submit(_in_worker, fn, item) for item in items]
        done_here: dict[int, object] = {}
        try:
            for index in range(len(items) - 1, 0, -1):
                if any(f.done() for f in futures[: self.workers]) or not futures[index].cancel():
                    break  # the workers are up: leave the rest to them
                done_here[index] = fn(self.engine, items[index])
            for index in range(len(items)):
                future, futures[index] = futures[index], None  # keep no result once handed on
                yield done_here.pop(index) if index in done_here else future.result()
        except BaseException:
            # A worker that died (out of memory, say) breaks the executor: never reuse it.
            self._stop(wait=False)
            raise


def validate_photos(
    engine: FaceEngine, gates: GateConfig, paths: list[Path], pool: WorkerPool | None = None
):
    """validate_photo over `paths`, in order: on `pool`'s processes when the batch is worth it."""
    if pool is None or not pool.serves(engine, paths):
        return (validate_photo(engine, gates, path) for path in paths)
    return pool.map(partial(_validate, gates), paths)


def embed_crops(engine: FaceEngine, paths: list[Path], pool: WorkerPool | None = None):
    """Embeddings of the crops at `paths`, in order: on `pool`'s processes when worth it."""
    if pool is None or not pool.serves(engine, paths):
        return (_embed(engine, path) for path in paths)
    return pool.map(_embed, paths)
