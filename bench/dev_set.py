"""Recognition quality at a domain's real scale, on the LFW development set built by
`../shared/datasets/build_lfw_dev.py` (never the other half of LFW):

    python -m bench.dev_set --dev-set DIR        (or FACEREC_DEV_SET=DIR; `make bench-dev`)

1. The whole domain built as a user builds it: a folder domain, `run_domain` (what `facerec run`
   calls: Dagster, SQLite, worker processes), timed from a fresh storage root.
2. Scored as `facerec evaluate` scores it: the production recognizer on every probe and every
   never-enrolled photo (rank-1, DIR, FAR, the DIR/FAR curve, seconds per photo).
3. DeepFace.represent (Dlib model, dlib detector) on a sample of the same gallery photos.
4. Each gate and the identity filter judged by what they do to recognition: every photo is
   detected and embedded once by the product's engine, then the product's own functions
   (judge_faces, keep_one_face_per_person, the identity filter, calibrate, the decision rule)
   are replayed with each setting switched off or changed.

Writes its section of BENCHMARKS.md (between the dev-set markers) and prints it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import (
    REPO,
    add_folder_domain,
    deepface_represent,
    fresh_storage,
    machine,
    short_commit,
    write_section,
)
from facerec_pipeline.core.faces.engine import DetectedFace, EngineConfig, FaceEngine, l2_normalize
from facerec_pipeline.core.faces.quality_gates import GateConfig, judge_faces
from facerec_pipeline.core.faces.weights import use_models_dir
from facerec_pipeline.core.gallery.identity import consistency_decisions
from facerec_pipeline.core.gallery.open_set import (
    calibrate,
    person_distances,
    person_starts,
    score_people,
)
from facerec_pipeline.core.images.duplicates import PhotoRef, find_duplicates
from facerec_pipeline.detected_faces.assets import keep_one_face_per_person
from facerec_pipeline.resources import face_engine_resource

BEGIN, END = "<!-- dev-set:begin -->", "<!-- dev-set:end -->"
FACES_KEPT = 3  # faces per photo detected and embedded for the replay (largest first)


# --- 1 and 2: the product, end to end -----------------------------------------------------------
def build_and_score(dev: Path, work: Path) -> dict:
    import dagster as dg

    from facerec_pipeline.core.evaluation.probe_evaluation import evaluate_probes, photos_in
    from facerec_pipeline.core.recognition.recognizer import Recognizer
    from facerec_pipeline.pipeline_run import run_domain

    settings = fresh_storage(work)
    folder = work / "gallery"  # a copy: the check scenarios change it
    shutil.copytree(dev / "gallery", folder)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    add_folder_domain(settings, "lfw_dev", "LFW dev", folder)
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        outcome = run_domain(settings, "lfw_dev", instance, echo=lambda line: None)
        build_seconds = time.perf_counter() - start
    if not outcome.success:
        raise RuntimeError(f"the dev-set run failed: {outcome.failures}")
    files = artifact_figures(settings, "lfw_dev")
    # the recognizer `facerec evaluate` builds: queries embedded as the gallery records
    recognizer = Recognizer.for_domains(
        settings, ["lfw_dev"], default_config=face_engine_resource(settings).engine_config
    )
    gallery = recognizer.galleries[0]
    figures, _ = evaluate_probes(recognizer, photos_in(dev / "probes"), photos_in(dev / "unknown"))
    with dg.DagsterInstance.get() as instance:
        scenarios = check_scenarios(settings, instance, dev / "gallery", folder)
    return {
        "scenarios": scenarios,
        "build_seconds": build_seconds,
        "photos": sum(1 for _ in (dev / "gallery").rglob("*.jpg")),
        "people": len(gallery.people),
        "faces": len(gallery.matrix),
        "point": gallery.operating_point,
        "figures": figures,
        "materialized": outcome.materialized,
        "files": files,
    }


def artifact_figures(settings, code: str) -> dict:
    """What the build wrote as artifacts, the previews stage's seconds (from the run's history)
    and the cost of `facerec artifacts verify` over the whole domain."""
    from sqlalchemy import func, select

    from facerec_pipeline.core.artifacts.audit import verify
    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.db.models import Artifact
    from facerec_pipeline.run_history import recent_sessions

    with session_scope(settings.database_url) as session:
        by_stage = session.execute(
            select(Artifact.stage, func.count(), func.sum(Artifact.size))
            .where(Artifact.domain == code)
            .group_by(Artifact.stage)
            .order_by(Artifact.stage)
        ).all()
        latest = recent_sessions(session, code)[0]
        start = time.perf_counter()
        audit = verify(session, settings, code)
        verify_seconds = time.perf_counter() - start
    return {
        "by_stage": [(stage, count, size or 0) for stage, count, size in by_stage],
        "previews_seconds": latest["timings"].get("previews"),
        "previews": latest["counts"].get("previews", {}),
        "verify_seconds": verify_seconds,
        "verify_ok": audit.ok,
        "verify_rows": audit.rows_checked,
    }


def check_scenarios(settings, instance, original: Path, folder: Path) -> list[dict]:
    """The promotion checks on the real gallery and on three damaged copies of it, each run as
    an incremental `run_domain` and then undone: one person's photos split under two names,
    a person's folder filled with another person's photos, and photos degraded."""
    from PIL import Image, ImageFilter

    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.gallery.promotion import latest_version
    from facerec_pipeline.pipeline_run import run_domain

    people = sorted(
        (p for p in original.iterdir() if p.is_dir()),
        key=lambda p: (-len(list(p.iterdir())), p.name),
    )
    many, second = people[0].name, people[1].name
    outcomes = []

    def run(label: str) -> None:
        run_domain(settings, "lfw_dev", instance, echo=lambda line: None)
        with session_scope(settings.database_url) as session:
            version = latest_version(session, "lfw_dev")
            failed = {
                name: {k: v for k, v in result.items() if k != "passed"}
                for name, result in (version.checks or {}).items()
                if not result["passed"]
            }
            outcomes.append(
                {
                    "scenario": label,
                    "version": version.version,
                    "status": version.status,
                    "failed": failed,
                }
            )

    def restore() -> None:
        shutil.rmtree(folder)
        shutil.copytree(original, folder)

    run("the real gallery, unchanged")
    photos = sorted((folder / many).iterdir())
    (folder / f"{many}_split").mkdir()
    for photo in photos[::2]:
        photo.rename(folder / f"{many}_split" / photo.name)
    run(f"{many}: half of the photos under a second name")
    restore()
    for photo in (folder / second).iterdir():
        photo.unlink()
    for photo in sorted((folder / many).iterdir())[::2]:
        photo.rename(folder / second / photo.name)
    run(f"{second}: folder filled with {many}'s photos")
    restore()
    for person in people[: len(people) * 2 // 5]:
        for photo in (folder / person.name).iterdir():
            with Image.open(photo) as image:
                small = image.convert("RGB").resize((64, 64)).resize(image.size)
                small.filter(ImageFilter.GaussianBlur(1)).save(photo, quality=60)
    run("40% of the people's photos degraded (64 px, blurred, JPEG 60)")
    restore()
    run("restored")
    return outcomes


# --- 3: DeepFace on the same photos -------------------------------------------------------------
def deepface_seconds(photos: list[Path], models_dir: Path) -> float:
    use_models_dir(models_dir)
    deepface_represent(photos[0])
    start = time.perf_counter()
    for photo in photos:
        deepface_represent(photo)
    return (time.perf_counter() - start) / len(photos)


# --- 4: gates replayed --------------------------------------------------------------------------
@dataclass
class EmbeddedFace(DetectedFace):
    """A face the engine found, with its embedding (for the replay)."""

    vector: np.ndarray | None = None


_engine: dict = {}


def _start(config: EngineConfig, models_dir: str) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _engine["engine"] = FaceEngine(config, Path(models_dir))


def _detect_and_embed(path: str) -> tuple[str, str | None, list[EmbeddedFace]]:
    from PIL import Image

    from facerec_pipeline.core.images.image_files import difference_hash, load_rgb

    engine = _engine["engine"]
    with Image.open(path) as image:
        phash = difference_hash(image.convert("RGB"))
    found = engine.detect(load_rgb(Path(path)))[:FACES_KEPT]
    vectors = engine.embed([face.crop_bgr for face in found]) if found else []
    faces = [
        EmbeddedFace(**vars(f), vector=l2_normalize(v)) for f, v in zip(found, vectors, strict=True)
    ]
    return path, phash, faces


def detect_everything(paths: list[Path], models_dir: Path, workers: int) -> dict:
    with ProcessPoolExecutor(
        workers,
        initializer=_start,
        initargs=(face_engine_resource().engine_config, str(models_dir)),
    ) as pool:
        return {p: (h, f) for p, h, f in pool.map(_detect_and_embed, map(str, paths), chunksize=16)}


def person_of(path: Path) -> str:
    return path.parent.name if path.parent.parent.name == "gallery" else path.name.split("__")[0]


def replay(dev: Path, found: dict, gates: GateConfig, identity: float | None, keep_one: bool):
    gallery_paths = sorted(str(p) for p in (dev / "gallery").rglob("*.jpg"))
    people = sorted({person_of(Path(p)) for p in gallery_paths})
    person_id = {name: i for i, name in enumerate(people)}
    duplicates = find_duplicates(
        [PhotoRef(i, p, found[p][0]) for i, p in enumerate(gallery_paths)],
        gates.duplicate_hash_distance,
    )
    rows = []
    for index, path in enumerate(gallery_paths):
        faces = found[path][1]
        decision = judge_faces(faces, gates)
        face = faces[decision.face_index] if decision.face_index is not None else None
        reason = "duplicate" if index in duplicates else decision.reason
        rows.append(
            {
                "person_id": person_id[person_of(Path(path))],
                "face": face,
                "status": "accepted" if reason is None else "rejected",
                "rejection_reason": reason,
                "face_size": face.size if face else None,
                "crop_path": "kept" if face is not None else None,
            }
        )
    if keep_one:
        keep_one_face_per_person(rows)
    accepted = sorted((r for r in rows if r["status"] == "accepted"), key=lambda r: r["person_id"])
    vectors = np.stack([r["face"].vector for r in accepted])
    labels = np.asarray([r["person_id"] for r in accepted])
    if identity is not None:
        keep = np.ones(len(accepted), dtype=bool)
        for person in np.unique(labels):
            rows_of = np.flatnonzero(labels == person)
            for row, verdict in zip(
                rows_of, consistency_decisions(vectors[rows_of], identity), strict=True
            ):
                keep[row] = verdict.accepted
        vectors, labels = vectors[keep], labels[keep]
    enrolled = np.unique(labels)
    rows_of_person = np.searchsorted(enrolled, labels)
    point = calibrate(vectors, rows_of_person, fallback_threshold=EngineConfig().threshold)
    starts = person_starts(rows_of_person)

    def answers(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        queries = [found[str(p)][1] for p in paths]
        top = np.full(len(paths), -1)
        scores = np.full(len(paths), np.inf)
        have = [i for i, faces in enumerate(queries) if faces]
        matrix = np.stack([queries[i][0].vector for i in have])
        best, scores[have] = score_people(person_distances(1.0 - matrix @ vectors.T, starts))
        top[have] = enrolled[best]
        return top, scores

    probes = sorted((dev / "probes").glob("*.jpg"))
    unknown = sorted((dev / "unknown").glob("*.jpg"))
    truth = np.asarray([person_id.get(person_of(p), -2) for p in probes])
    top, scores = answers(probes)
    _, stranger_scores = answers(unknown)
    right = top == truth
    return {
        "faces": len(vectors),
        "people": len(enrolled),
        "rank1": right.mean(),
        "dir": (right & (scores <= point.threshold)).mean(),
        "far": (stranger_scores <= point.threshold).mean(),
    }


def ablation(dev: Path, found: dict) -> list[tuple[str, dict]]:
    resource = face_engine_resource()
    defaults, identity = resource.gates, resource.identity_distance
    none = replace(
        defaults,
        min_confidence=0.0,
        min_face_size=0,
        min_blur_score=0.0,
        dominance_ratio=0.0,
        duplicate_hash_distance=-1,
    )
    settings = [
        ("defaults", defaults, identity, True),
        ("no gate, no identity filter, no keep-one-face", none, None, False),
        ("no gate (identity filter and keep-one-face on)", none, identity, True),
        ("without keep-one-face", defaults, identity, False),
        ("size floor off", replace(defaults, min_face_size=0), identity, True),
        ("size floor 50 px", replace(defaults, min_face_size=50), identity, True),
        ("size floor 60 px (old default)", replace(defaults, min_face_size=60), identity, True),
        (
            "size 60 px + blur 40 (old), no keep-one-face",
            replace(defaults, min_face_size=60, min_blur_score=40.0),
            identity,
            False,
        ),
        ("blur floor off", replace(defaults, min_blur_score=0.0), identity, True),
        ("blur floor 30", replace(defaults, min_blur_score=30.0), identity, True),
        ("blur floor 40 (old default)", replace(defaults, min_blur_score=40.0), identity, True),
        ("confidence floor off", replace(defaults, min_confidence=0.0), identity, True),
        ("confidence floor 0.8", replace(defaults, min_confidence=0.8), identity, True),
        (
            "dominance rule off (largest face wins)",
            replace(defaults, dominance_ratio=0.0),
            identity,
            True,
        ),
        ("duplicates kept", replace(defaults, duplicate_hash_distance=-1), identity, True),
        ("identity filter off", defaults, None, True),
        ("identity filter at 0.07 (DeepFace's 1:1 threshold)", defaults, 0.07, True),
        ("identity filter at 0.15", defaults, 0.15, True),
    ]
    return [
        (label, replay(dev, found, gates, ident, keep)) for label, gates, ident, keep in settings
    ]


# --- report -------------------------------------------------------------------------------------
def report(built: dict, deepface: float, sample: int, rows: list[tuple[str, dict]]) -> str:
    figures, point = built["figures"], built["point"]
    commit = short_commit()
    ours = built["build_seconds"] / built["photos"]
    lines = [
        BEGIN,
        "## Recognition quality at a domain's scale: the LFW development set (`make bench-dev`)",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Commit: {commit}. "
        "Data: `../shared/datasets/build_lfw_dev.py` (849 people from 2,996 photos, 849 probes, "
        "1,000 never-enrolled people); the other half of LFW is never used.",
        "",
        "### The product, end to end",
        "",
        "Built as a folder domain with `run_domain` (what `facerec run` does) from an empty "
        "storage root, then scored as `facerec evaluate` scores it (the largest face of each "
        "photo; a photo with no face counts as a miss or, for a stranger, as no name given).",
        "",
        "| rank-1 | DIR | FAR | wrong name to an enrolled person | recognize s/photo median / p95 "
        "| people / faces in the gallery | build s (s/photo) |",
        "|---|---|---|---|---|---|---|",
        f"| {figures['rank1']:.3f} | {figures['dir']:.3f} | {figures['far']:.3f} | "
        f"{figures['wrong_name_rate']:.3f} | {figures['seconds_per_photo_median']:.3f} / "
        f"{figures['seconds_per_photo_p95']:.3f} | {built['people']} / {built['faces']} | "
        f"{built['build_seconds']:.0f} ({ours:.3f}) |",
        "",
        f"Operating point calibrated by the gallery itself for a {point.target_far:.0%} target: "
        f"score <= {point.threshold}; it expected DIR {point.expected_dir} and FAR "
        f"{point.expected_far} ({point.stranger_trials} simulated strangers; 95% upper bound "
        f"{point.far_upper_bound}).",
        "",
        "DIR against FAR at the product's rule (other thresholds): "
        + ", ".join(f"FAR {p['far']:.3f} → DIR {p['dir']:.3f}" for p in figures["curve"]),
        "",
        f"DeepFace.represent (Dlib, dlib) on {sample} of the gallery photos: {deepface:.3f} s per "
        f"photo, one process; {deepface * built['photos']:.0f} s for the whole set. The whole "
        f"domain build (detection, gates, embedding, gallery, checks, Dagster and SQLite) is "
        f"{deepface / ours:.1f}× faster.",
        "",
        *files_lines(built["files"]),
        "",
        "### Gates and filters, each judged by recognition",
        "",
        "Each photo detected and embedded once by the product's engine; the product's functions "
        "replayed per setting (the gallery's own calibration each time).",
        "",
        "| setting | faces | people | rank-1 | DIR | FAR |",
        "|---|---|---|---|---|---|",
    ]
    for label, result in rows:
        lines.append(
            f"| {label} | {result['faces']} | {result['people']} | {result['rank1']:.3f} | "
            f"{result['dir']:.3f} | {result['far']:.3f} |"
        )
    lines += [
        "",
        "### Promotion checks on the real gallery and on damaged copies of it",
        "",
        "Each an incremental `run_domain` on a copy of the gallery folder, then undone.",
        "",
        "| scenario | version | status | failed checks (figures) |",
        "|---|---|---|---|",
    ]
    for outcome in built["scenarios"]:
        failed = "; ".join(
            f"{name} ({_shown(figures)})" for name, figures in outcome["failed"].items()
        )
        lines.append(
            f"| {outcome['scenario']} | v{outcome['version']} | {outcome['status']} | "
            f"{failed or 'none'} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def _shown(figures: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in figures.items() if key in SHOWN_FIGURES)


SHOWN_FIGURES = {
    "closest_pair",
    "closest_distance",
    "too_close_count",
    "expected_dir",
    "serving_expected_dir",
    "expected_rank1",
    "serving_expected_rank1",
    "lost_people",
    "loo_top1_accuracy",
    "shrink",
    "people_below_minimum",
}


def files_lines(files: dict) -> list[str]:
    made = files["previews"].get("made_this_run", 0)
    seconds = files["previews_seconds"] or 0.0
    each = 1000 * seconds / max(made, 1)
    stages = ", ".join(
        f"{stage} {count} ({size / 1e6:.1f} MB)" for stage, count, size in files["by_stage"]
    )
    return [
        f"Files the build wrote, each an `artifacts` row: {stages}. The previews stage (400 px "
        f"thumbnail, 800 px web copy and blurhash of each accepted photo and of its face) made "
        f"those of {made} photos and faces in {seconds:.0f} s ({each:.0f} ms each) within the "
        "build "
        f"above. `facerec artifacts verify` of the domain ({files['verify_rows']} rows, every "
        f"file hashed): {files['verify_seconds']:.1f} s, "
        + ("no problem found." if files["verify_ok"] else "PROBLEMS FOUND."),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dev-set",
        default=os.environ.get("FACEREC_DEV_SET"),
        help="the folder build_lfw_dev.py wrote (env FACEREC_DEV_SET)",
    )
    parser.add_argument("--deepface-sample", type=int, default=150)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    if not args.dev_set:
        parser.error(
            "give --dev-set DIR or FACEREC_DEV_SET (build it with "
            "../shared/datasets/build_lfw_dev.py)"
        )
    dev = Path(args.dev_set)
    if not all((dev / part).is_dir() for part in ("gallery", "probes", "unknown")):
        parser.error(f"{dev} lacks gallery/, probes/ or unknown/: not a build_lfw_dev.py output")
    with tempfile.TemporaryDirectory(prefix="facerec-dev-") as tmp:
        work = Path(tmp)
        print("building and scoring the dev-set domain...", flush=True)
        built = build_and_score(dev, work)
        models = work / "storage" / "models"
        gallery_photos = sorted((dev / "gallery").rglob("*.jpg"))
        sample = gallery_photos[:: max(1, len(gallery_photos) // args.deepface_sample)]
        sample = sample[: args.deepface_sample]
        print(f"DeepFace on {len(sample)} photos...", flush=True)
        deepface = deepface_seconds(sample, models)
        print("detecting and embedding every photo once for the gate replay...", flush=True)
        every = gallery_photos + sorted((dev / "probes").glob("*.jpg"))
        every += sorted((dev / "unknown").glob("*.jpg"))
        found = detect_everything(every, models, args.workers)
        rows = ablation(dev, found)
    section = report(built, deepface, len(sample), rows)
    print(section)
    write_section(Path(args.output), section, BEGIN, END)


if __name__ == "__main__":
    main()
