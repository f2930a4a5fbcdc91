"""How fast the product answers: a 100,000-face gallery loaded from the files the pipeline
writes (cold start), and one photo recognized end to end with a warm engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import served_gallery
from facerec_pipeline.core.faces.engine import FaceEngine, l2_normalize
from facerec_pipeline.core.gallery.loading import load_batches


def cold_start(size: int, dim: int, work: Path) -> dict:
    """Load a version of `size` faces written by the pipeline's own batch writer (10 faces a
    person, so batches of 500 people and, from 50,000 faces, the faiss index)."""
    from facerec_pipeline.core.gallery.loading import file_checksums, index_path, served_paths
    from facerec_pipeline.core.gallery.publish import GalleryEntry, write_batches

    rng = np.random.default_rng(1)
    matrix = l2_normalize(rng.standard_normal((size, dim)))
    crop = work / "cold_crop.png"
    crop.write_bytes(b"\x89PNG\r\n\x1a\n")  # linked once per face; never read here
    entries = [
        GalleryEntry(
            face_id=i,
            person_id=i // 10,
            person=f"Person {i // 10}",
            normalized_name=f"person_{i // 10:06d}",
            wikidata_id=None,
            image_sha256=f"{i:064x}",
            crop_path=crop,
            vector=matrix[i],
        )
        for i in range(size)
    ]
    batches = write_batches(
        work / "cold",
        entries,
        domain="cold",
        version=1,
        model_config="x",
        created_at=datetime.now(UTC),
        first_batch=1,
    )
    # the files are checked against their checksums on every load, as the recognizer does
    checksums = file_checksums(work, served_paths(batches, index_path(work / "cold", 1)))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        loaded = load_batches(work, "cold", 1, "x", [str(b) for b in batches], checksums=checksums)
        times.append(time.perf_counter() - start)
    return {
        "size": size,
        "median_ms": float(np.median(times)) * 1000,
        "matrix_mib": loaded.matrix.nbytes / 2**20,
        "batches": len(batches),
        "index": loaded.index is not None,
    }


def end_to_end_gallery(real: np.ndarray, real_people: list[str], model_config: str):
    """The real faces and 1,000 synthetic ones (10 a person), as the recognizer serves them."""
    synthetic = l2_normalize(np.random.default_rng(2).standard_normal((1000, 128)))
    return served_gallery(
        np.vstack([real, synthetic]).astype(np.float32),
        real_people + [f"synthetic_{i // 10:04d}" for i in range(1000)],
        model_config,
    )


def end_to_end(engine: FaceEngine, photos: list[Path], gallery, runs: int = 10) -> dict:
    """Recognizer.recognize_image (read, detect, embed, the open-set decision), per photo of 1
    to 2.2 megapixels (warm engine)."""
    from facerec_pipeline.core.recognition.recognizer import Recognizer

    recognizer = Recognizer([gallery], engine, top_k=5)
    typical = [p for p in photos if 1.0 <= _megapixels(p) <= 2.2]
    times = []
    for _ in range(runs):
        for probe in typical:
            start = time.perf_counter()
            recognizer.recognize_image(probe)
            times.append(time.perf_counter() - start)
    names = ", ".join(f"{p.name} ({_megapixels(p):.1f} MP)" for p in typical)
    return {
        "photo": names,
        "median_s": float(np.median(times)),
        "p95_s": float(np.percentile(times, 95)),
    }


def _megapixels(path: Path) -> float:
    width, height = Image.open(path).size
    return width * height / 1e6


def section(cold: dict, e2e: dict) -> list[str]:
    """Its part of BENCHMARKS.md."""
    return [
        f"## Cold start\n\nLoading a {cold['size']:,}-face gallery written by the pipeline's "
        f"batch writer ({cold['batches']} batches of up to 500 people"
        f"{', with its faiss index' if cold['index'] else ''}; embeddings.npy, person_rows.npy, "
        "people.json): "
        f"median {cold['median_ms']:.0f} ms; matrix {cold['matrix_mib']:.0f} MiB in memory.",
        "",
        f"## One photo end to end (read, detect, embed, search; warm engine)\n\n"
        f"{e2e['photo']}: median {e2e['median_s']:.3f} s, p95 "
        f"{e2e['p95_s']:.3f} s.",
    ]


def goals(cold: dict, e2e: dict) -> list[tuple[str, str, str, bool]]:
    """Its rows of the goals table: (measure, goal, measured, met)."""
    return [
        (
            "cold start, 100k faces",
            "< 200 ms",
            f"{cold['median_ms']:.0f} ms",
            cold["median_ms"] < 200,
        ),
        ("one photo end to end", "< 0.3 s", f"{e2e['median_s']:.3f} s", e2e["median_s"] < 0.3),
    ]
