"""Search latency per query on galleries of 1,000 to 1,000,000 faces (real faces padded with
synthetic ones): the recognizer's own search, exact and through the faiss index, its recall,
against DeepFace.find on DeepFace's embeddings of the same photos."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import served_gallery
from bench.photos import person_of
from facerec_pipeline.core.faces.engine import FaceEngine, l2_normalize
from facerec_pipeline.core.gallery.search_index import ANN_MIN_FACES, build_ivf

# Probes for the DeepFace.find comparison, kept out of the searched gallery with their variants.
HELD_OUT = ("obama3.jpg", "biden_mirrored.jpg", "astronaut_mirrored.jpg", "obama_partial_face.jpg")


def is_held_out(name: str) -> bool:
    return any(name == held or name.startswith(Path(held).stem + "_v") for held in HELD_OUT)


def real_faces(speed: dict, workers: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The real faces of the searched galleries, from the throughput run: those both pipelines
    accepted, held-out photos left out, grouped by person. Ours, their people, DeepFace's."""
    ours = speed[f"{next(iter(speed.values()))['model']}_{workers}_processes"]  # the default
    real, accepted = ours["vectors"], ours["accepted"]
    kept = [i for i, name in enumerate(accepted) if not is_held_out(name)]
    theirs = speed["deepface_represent"]
    deepface_of = dict(zip(theirs["accepted"], theirs["vectors"], strict=True))
    kept = sorted(
        (i for i in kept if accepted[i] in deepface_of),
        key=lambda i: person_of(Path(accepted[i])),
    )
    real_people = [person_of(Path(accepted[i])) for i in kept]
    real_deepface = np.stack([deepface_of[accepted[i]] for i in kept])
    return real[kept], real_people, real_deepface


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 95)) * 1000


def measure(
    real: np.ndarray,
    real_people: list[str],
    real_deepface: np.ndarray,
    sizes: list[int],
    queries: int,
    find_max: int,
    held_out: list[Path],
    engine: FaceEngine,
    work: Path,
) -> list[dict]:
    """Ours: the recognizer's own search (Recognizer.identify: people ranked by the mean of
    their nearest faces, exact below 50,000 faces and through the faiss index from there)
    on our embeddings; DeepFace.find on DeepFace's embeddings of the same photos."""
    from deepface import DeepFace
    from deepface.modules import recognition
    from deepface.modules.filestore import build_file_store

    from facerec_pipeline.core.gallery.open_set import rank_people
    from facerec_pipeline.core.recognition.recognizer import Recognizer

    rng = np.random.default_rng(0)
    probe_vectors = [
        l2_normalize(
            engine.embed([engine.detect(np.asarray(Image.open(p).convert("RGB")))[0].crop_bgr])
        )[0]
        for p in held_out
    ]
    rows = []
    for size in sizes:
        synthetic = l2_normalize(rng.standard_normal((size - len(real), real.shape[1])))
        matrix = np.ascontiguousarray(np.vstack([real, synthetic]).astype(np.float32))
        labels = real_people + [f"synthetic_{i // 10:06d}" for i in range(size - len(real))]
        picks = rng.integers(0, size, queries)
        probes = l2_normalize(
            matrix[picks] + 0.02 * rng.standard_normal((queries, matrix.shape[1]))
        )
        times = []
        for q in probes:
            start = time.perf_counter()
            int(np.argmax(matrix @ q))
            times.append(time.perf_counter() - start)
        p50, p95 = percentiles(times)
        build_seconds, index = None, None
        if size >= ANN_MIN_FACES:
            start = time.perf_counter()
            index = build_ivf(matrix)
            build_seconds = time.perf_counter() - start
            import faiss

            faiss.omp_set_num_threads(1)
        gallery = served_gallery(matrix, labels, engine.config.model_key, index)
        recognizer = Recognizer([gallery], engine, top_k=5)
        served_times, hits = [], 0
        for q in probes:
            start = time.perf_counter()
            _, matches, _ = recognizer.identify(q)
            served_times.append(time.perf_counter() - start)
            exact_person = rank_people(matrix, gallery.person_starts, q, 1)[0][0]
            hits += matches[0]["normalized_name"] == gallery.people[int(exact_person)]["person"]
        ann_p50, ann_p95 = percentiles(served_times)
        row = {
            "ann_p50_ms": ann_p50,
            "ann_p95_ms": ann_p95,
            "ann_build_s": build_seconds,
            "recall_at_1": hits / len(probes),
            "size": size,
            "ours_exact_p50_ms": p50,
            "ours_exact_p95_ms": p95,
            "probe_top1_same_as_deepface": None,
        }
        if size <= find_max:
            db = work / f"find_{size}"
            db.mkdir(exist_ok=True)
            people = labels
            identities = [f"{db}/{person}/img_{i}.jpg" for i, person in enumerate(people)]
            theirs = np.vstack([real_deepface, matrix[len(real) :]])
            representations = [
                {
                    "identity": identity,
                    "hash": str(i),
                    "embedding": theirs[i].tolist(),
                    "target_x": 0,
                    "target_y": 0,
                    "target_w": 150,
                    "target_h": 150,
                }
                for i, identity in enumerate(identities)
            ]
            name = "ds_model_dlib_detector_dlib_aligned_normalization_base_expand_0.npz"
            save = getattr(recognition, "__save_representations")
            save(
                store=build_file_store(str(db)),
                datastore_path=str(db / name),
                representations=representations,
                datastore_format="npz",
            )

            def find(probe: Path, db: Path = db):
                return DeepFace.find(
                    img_path=str(probe),
                    db_path=str(db),
                    model_name="Dlib",
                    detector_backend="dlib",
                    refresh_database=False,
                    silent=True,
                    distance_metric="cosine",
                )

            find_times, agreements = [], []
            for number, (probe, vector) in enumerate(zip(held_out, probe_vectors, strict=True)):
                repeats = (2 if size >= 100_000 else 5) if number == 0 else 1
                for _ in range(repeats):
                    start = time.perf_counter()
                    found = find(probe)
                    find_times.append(time.perf_counter() - start)
                best = found[0]["identity"].iloc[0].split("/")[-2] if len(found[0]) else None
                agreements.append(best == recognizer.identify(vector)[1][0]["normalized_name"])
            row.update(
                deepface_find_median_s=float(np.median(find_times)),
                probe_top1_same_as_deepface=f"{sum(agreements)}/{len(agreements)}",
            )
        rows.append(row)
    return rows


def section(rows: list[dict]) -> list[str]:
    """Its part of BENCHMARKS.md."""
    lines = [
        "## Search latency per query (probe face already embedded for ours)",
        "",
        "Served: the recognizer's own search and decision (`Recognizer.identify`: people ranked "
        "by the mean of their nearest faces (2, or a quarter of many), the open-set score), "
        "exact below "
        f"{ANN_MIN_FACES:,} faces and through a faiss IVF index (built when the version is "
        "written) from there; recall@1: the same top person as the exact ranking. Exact p95: a "
        "bare matrix product and argmax, for reference. Ours embed with the default face model "
        "and DeepFace.find searches DeepFace's own embeddings of the same photos. Queries are "
        "gallery "
        "faces with noise (a new photo of an enrolled person). DeepFace.find and ours answer "
        f"for {len(HELD_OUT)} held-out photos ({', '.join(HELD_OUT)}), which the gallery does "
        "not hold, nor their variants.",
        "",
        "| gallery | exact p95 ms | served p50 ms | served p95 ms | recall@1 | index build s | "
        "DeepFace.find median s (incl. probe) | ratio | same top-1 person, held-out probes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        find = row.get("deepface_find_median_s")
        find_text = f"{find:.2f}" if find else "not run"
        ratio = f"{find * 1000 / row['ann_p95_ms']:.0f}x" if find else ""
        same = row["probe_top1_same_as_deepface"] if find else ""
        build = f"{row['ann_build_s']:.1f}" if row["ann_build_s"] is not None else "-"
        lines.append(
            f"| {row['size']:,} | {row['ours_exact_p95_ms']:.2f} | {row['ann_p50_ms']:.2f} | "
            f"{row['ann_p95_ms']:.2f} | {row['recall_at_1']:.3f} | {build} | {find_text} | "
            f"{ratio} | {same} |"
        )
    return lines


def goals(rows: list[dict]) -> list[tuple[str, str, str, bool]]:
    """Its rows of the goals table: (measure, goal, measured, met)."""
    by_size = {row["size"]: row for row in rows}
    return [
        (
            "search p95 at 100k, recall@1 >= 0.99",
            "< 2 ms",
            _ms(by_size, 100_000),
            _p95(by_size, 100_000) < 2 and by_size[100_000]["recall_at_1"] >= 0.99,
        ),
        (
            "search p95 at 1M, recall@1 >= 0.99",
            "< 5 ms",
            _ms(by_size, 1_000_000),
            _p95(by_size, 1_000_000) < 5 and by_size[1_000_000]["recall_at_1"] >= 0.99,
        ),
    ]


def _p95(by_size: dict, size: int) -> float:
    return by_size[size]["ann_p95_ms"] if size in by_size else float("inf")


def _ms(by_size: dict, size: int) -> str:
    if size not in by_size:
        return "not run"
    return f"{_p95(by_size, size):.2f} ms, recall@1 {by_size[size]['recall_at_1']:.3f}"
