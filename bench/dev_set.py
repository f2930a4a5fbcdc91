"""Recognition quality at a domain's real scale, on the LFW development set built by
`../shared/datasets/build_lfw_dev.py` (never the other half of LFW), for each offline face model
(`sface`, the default, and `dlib`):

    python -m bench.dev_set --dev-set DIR        (or FACEREC_DEV_SET=DIR; `make bench-dev`)

1. The whole domain built as a user builds it: a folder domain set to the model, `run_domain`
   (what `facerec run` calls: Dagster, SQLite, worker processes), timed from a fresh storage root.
2. Scored as `facerec evaluate` scores it: the production recognizer on every probe and every
   never-enrolled photo (rank-1, DIR, FAR, the DIR/FAR curve, seconds per photo).
3. DeepFace.represent (Dlib model, dlib detector) on a sample of the same gallery photos.
4. Each setting of the model judged by what it does to recognition: every photo is detected and
   embedded once by the model's engine, then the product's own functions (judge_faces,
   keep_one_face_per_person, the identity filter, calibrate, the decision rule) are replayed
   with each setting switched off or changed; the distances behind the identity filter,
   `distinct_identities` and the 1:1 threshold; the person distance (the share of a person's
   nearest faces) on the whole gallery and on 16 half-galleries.
5. The promotion checks on the default model's gallery and on damaged copies of it.

Writes its section of BENCHMARKS.md (between the dev-set markers) and prints it.
"""

from __future__ import annotations

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
    checked_dev_set,
    deepface_represent,
    dev_set_parser,
    fresh_storage,
    machine,
    short_commit,
    write_section,
)
from facerec_pipeline.app.stages.detected_faces import keep_one_face_per_person
from facerec_pipeline.core.face_models import FaceModel, face_model
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

BEGIN, END = "<!-- dev-set:begin -->", "<!-- dev-set:end -->"
FACES_KEPT = 3  # faces per photo detected and embedded for the replay (largest first)


# --- 1 and 2: the product, end to end -----------------------------------------------------------
def build_and_score(dev: Path, work: Path, model: FaceModel, scenarios: bool) -> dict:
    import dagster as dg

    from facerec_pipeline.core.evaluation.probe_evaluation import evaluate_probes, photos_in
    from facerec_pipeline.core.recognition.recognizer import Recognizer
    from facerec_pipeline.defs.launch import run_domain

    settings = fresh_storage(work)
    folder = work / "gallery"  # a copy: the check scenarios change it
    shutil.copytree(dev / "gallery", folder)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    add_folder_domain(settings, "lfw_dev", "LFW dev", folder, model.name)
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        outcome = run_domain(settings, "lfw_dev", instance, echo=lambda line: None)
        build_seconds = time.perf_counter() - start
    if not outcome.success:
        raise RuntimeError(f"the dev-set run failed: {outcome.failures}")
    files = artifact_figures(settings, "lfw_dev")
    # the recognizer `facerec evaluate` builds: queries embedded as the gallery records
    recognizer = Recognizer.for_domains(settings, ["lfw_dev"])
    gallery = recognizer.galleries[0]
    probes, unknown = photos_in(dev / "probes"), photos_in(dev / "unknown")
    figures, results = evaluate_probes(recognizer, probes, unknown)
    with dg.DagsterInstance.get() as instance:
        checked = check_scenarios(settings, instance, dev / "gallery", folder) if scenarios else []
    return {
        "model": model,
        "scenarios": checked,
        "build_seconds": build_seconds,
        "photos": sum(1 for _ in (dev / "gallery").rglob("*.jpg")),
        "people": len(gallery.people),
        "faces": len(gallery.matrix),
        "point": gallery.operating_point,
        "figures": figures,
        "errata": errata_figures(results),
        "materialized": outcome.materialized,
        "files": files,
        "models_dir": settings.models_dir,
    }


# LFW's own errata (its index.html, "Errata"): this photo, filed under a person with one photo
# (so among the never-enrolled), shows Eduardo Duhalde, who is enrolled in the dev set.
ERRATA = {"Carlos_Ruckauf_0001.jpg": "eduardo_duhalde"}


def errata_figures(results) -> dict:
    """The strangest strangers (the lowest scores among the never-enrolled, with whom they were
    taken for), and the DIR at FAR <= 0.1% once the photo LFW's errata name is scored as the
    person it shows."""
    strangers = sorted((r for r in results if r.truth is None), key=lambda r: r.score)
    enrolled = [r for r in results if r.truth is not None]
    corrected = [r for r in strangers if Path(r.path).name not in ERRATA]
    allowed = round(0.001 * len(corrected))  # one of the 999 others: FAR 0.1%
    threshold = np.nextafter(corrected[allowed].score, -np.inf) if corrected else np.inf
    right = [r.nearest == r.truth and r.score <= threshold for r in enrolled]
    return {
        "lowest": [(Path(r.path).name, r.nearest, round(r.score, 4)) for r in strangers[:4]],
        "dir_far_0_1_corrected": float(np.mean(right)) if right else None,
        "errata_named": {
            Path(r.path).name: r.named for r in strangers if Path(r.path).name in ERRATA
        },
    }


def artifact_figures(settings, code: str) -> dict:
    """What the build wrote as artifacts, the previews stage's seconds (from the run's history)
    and the cost of `facerec artifacts verify` over the whole domain."""
    from sqlalchemy import func, select

    from facerec_pipeline.app.run_history import recent_sessions
    from facerec_pipeline.core.artifacts.audit import verify
    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.db.models import Artifact

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

    from facerec_pipeline.app.promotion import latest_version
    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.defs.launch import run_domain

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
    """A face the engine found, with its embedding as the product makes it and without the
    mirror average (for the replay)."""

    vector: np.ndarray | None = None
    plain: np.ndarray | None = None


_engine: dict = {}
REPLAY_FLOOR = 0.1  # yunet: faces scored from here are kept, so a floor can be replayed


def replay_config(model: FaceModel) -> EngineConfig:
    """The model's engine, reporting faces from REPLAY_FLOOR (the floor is replayed)."""
    return replace(model.engine, min_detection_score=REPLAY_FLOOR)


def _start(config: EngineConfig, models_dir: str) -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    cv2.setNumThreads(1)
    _engine["engine"] = FaceEngine(config, Path(models_dir))
    _engine["plain"] = FaceEngine(replace(config, mirror_average=False), Path(models_dir))


def _detect_and_embed(path: str) -> tuple[str, str | None, list[EmbeddedFace]]:
    from PIL import Image

    from facerec_pipeline.core.images.image_files import difference_hash, load_rgb

    engine = _engine["engine"]
    with Image.open(path) as image:
        phash = difference_hash(image.convert("RGB"))
    found = engine.detect(load_rgb(Path(path)))[:FACES_KEPT]
    crops = [face.crop_bgr for face in found]
    vectors = l2_normalize(engine.embed(crops)) if found else []
    plain = l2_normalize(_engine["plain"].embed(crops)) if found else []
    faces = [
        EmbeddedFace(**{**vars(f), "crop_bgr": _blur_copy(f.crop_bgr)}, vector=v, plain=p)
        for f, v, p in zip(found, vectors, plain, strict=True)
    ]
    return path, phash, faces


def _blur_copy(crop_bgr: np.ndarray) -> np.ndarray:
    """What blur_score measures of a crop (grey, 112 px): it gives the same score, in a tenth
    of the memory of a crop."""
    import cv2

    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (112, 112), interpolation=cv2.INTER_AREA)


def detect_everything(paths: list[Path], models_dir: Path, workers: int, config) -> dict:
    import multiprocessing

    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # never fork a process OpenCV threads
        initializer=_start,
        initargs=(config, str(models_dir)),
    ) as pool:
        return {p: (h, f) for p, h, f in pool.map(_detect_and_embed, map(str, paths), chunksize=16)}


def person_of(path: Path) -> str:
    return path.parent.name if path.parent.parent.name == "gallery" else path.name.split("__")[0]


@dataclass(frozen=True)
class Setting:
    """One replay: the gates, the identity filter (None: off) and keep-one-face, the detector's
    floor (faces scored under it dropped, as the detector drops them) and the mirror average."""

    label: str
    gates: GateConfig
    identity: float | None
    keep_one: bool = True
    floor: float = 0.0
    mirror: bool = True


def faces_of(found: dict, path: str, setting: Setting) -> list[EmbeddedFace]:
    """A photo's faces as the setting's detector would report them."""
    faces = [face for face in found[path][1] if face.confidence >= setting.floor]
    return faces if setting.mirror else [replace(face, vector=face.plain) for face in faces]


@dataclass
class Replayed:
    """A gallery the product's functions would build, and the probes and strangers' faces."""

    vectors: np.ndarray  # accepted faces, grouped by person
    labels: np.ndarray  # their person ids
    probes: list  # (vector of the largest face or None, person id or -2)
    strangers: list  # vector of the largest face or None


def replay_gallery(dev: Path, found: dict, setting: Setting) -> Replayed:
    """The product's functions (judge_faces, duplicates, keep_one_face_per_person, the identity
    filter) on the stored detections."""
    gates = setting.gates
    gallery_paths = sorted(str(p) for p in (dev / "gallery").rglob("*.jpg"))
    people = sorted({person_of(Path(p)) for p in gallery_paths})
    person_id = {name: i for i, name in enumerate(people)}
    duplicates = find_duplicates(
        [PhotoRef(i, p, found[p][0]) for i, p in enumerate(gallery_paths)],
        gates.duplicate_hash_distance,
    )
    rows = []
    for index, path in enumerate(gallery_paths):
        faces = faces_of(found, path, setting)
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
    if setting.keep_one:
        keep_one_face_per_person(rows)
    accepted = sorted((r for r in rows if r["status"] == "accepted"), key=lambda r: r["person_id"])
    vectors = np.stack([r["face"].vector for r in accepted])
    labels = np.asarray([r["person_id"] for r in accepted])
    if setting.identity is not None:
        keep = np.ones(len(accepted), dtype=bool)
        for person in np.unique(labels):
            rows_of = np.flatnonzero(labels == person)
            for row, verdict in zip(
                rows_of, consistency_decisions(vectors[rows_of], setting.identity), strict=True
            ):
                keep[row] = verdict.accepted
        vectors, labels = vectors[keep], labels[keep]

    def largest(path: Path):
        faces = faces_of(found, str(path), setting)
        return faces[0].vector if faces else None

    probes = [
        (largest(p), person_id.get(person_of(p), -2))
        for p in sorted((dev / "probes").glob("*.jpg"))
    ]
    strangers = [largest(p) for p in sorted((dev / "unknown").glob("*.jpg"))]
    return Replayed(vectors, labels, probes, strangers)


def score_replay(
    replayed: Replayed, model: FaceModel, share: float, people: np.ndarray | None = None
) -> dict:
    """Calibrate the gallery (limited to `people` when given) as a version is calibrated and
    score its probes (those of `people`) and strangers (the never-enrolled photos, and the
    probes of everyone else)."""
    enrolled_mask = (
        np.ones(len(replayed.labels), bool) if people is None else np.isin(replayed.labels, people)
    )
    vectors, labels = replayed.vectors[enrolled_mask], replayed.labels[enrolled_mask]
    enrolled = np.unique(labels)
    rows_of_person = np.searchsorted(enrolled, labels)
    point = calibrate(
        vectors, rows_of_person, fallback_threshold=model.verification_threshold, share=share
    )
    starts = person_starts(rows_of_person)
    chosen = None if people is None else set(people.tolist())  # the half's people
    probes = [(v, t) for v, t in replayed.probes if chosen is None or t in chosen]
    strangers = replayed.strangers + [
        v for v, t in replayed.probes if chosen is not None and t not in chosen
    ]

    def answers(queries: list) -> tuple[np.ndarray, np.ndarray]:
        top = np.full(len(queries), -1)
        scores = np.full(len(queries), np.inf)
        have = [i for i, vector in enumerate(queries) if vector is not None]
        matrix = np.stack([queries[i] for i in have])
        best, scores[have] = score_people(person_distances(1.0 - matrix @ vectors.T, starts, share))
        top[have] = enrolled[best]
        return top, scores

    truth = np.asarray([t for _, t in probes])
    top, scores = answers([v for v, _ in probes])
    _, stranger_scores = answers(strangers)
    right = top == truth
    return {
        "faces": len(vectors),
        "people": len(enrolled),
        "rank1": right.mean(),
        "dir": (right & (scores <= point.threshold)).mean(),
        "far": (stranger_scores <= point.threshold).mean(),
        "wrong": ((top != truth) & (top >= 0) & (scores <= point.threshold)).mean(),
    }


def replay(dev: Path, found: dict, model: FaceModel, setting: Setting) -> dict:
    """The product's functions on the stored detections, calibrated as a version is, scored on
    the probes and the never-enrolled photos."""
    return score_replay(replay_gallery(dev, found, setting), model, model.nearest_share)


def default_setting(model: FaceModel) -> Setting:
    floor = model.engine.min_detection_score if model.engine.uses_sface else 0.0
    return Setting("defaults", model.gates, model.identity_max_distance, floor=floor)


def distance_figures(dev: Path, found: dict, model: FaceModel) -> dict:
    """The distances behind the identity filter, `distinct_identities` and the 1:1 threshold,
    on the faces the model's gates accept (before the identity filter)."""
    replayed = replay_gallery(dev, found, replace(default_setting(model), identity=None))
    vectors, labels = replayed.vectors, replayed.labels
    rng = np.random.default_rng(0)
    means, own, planted, halves = {}, [], [], []
    for person in np.unique(labels):
        rows = np.flatnonzero(labels == person)
        means[person] = _unit(vectors[rows].mean(axis=0))
        if len(rows) >= 3:  # each face against the mean of the person's other faces
            total = vectors[rows].sum(axis=0)
            own += [1.0 - vectors[r] @ _unit(total - vectors[r]) for r in rows]
        if len(rows) >= 2:  # someone else's face planted among the person's photos
            others = rng.choice(np.flatnonzero(labels != person), 5)
            planted += list(1.0 - vectors[others] @ means[person])
        if len(rows) >= 4:  # one person's photos split under two names
            a, b = _unit(vectors[rows[::2]].mean(0)), _unit(vectors[rows[1::2]].mean(0))
            halves.append(1.0 - a @ b)
    people = np.stack(list(means.values()))
    between = 1.0 - people @ people.T
    np.fill_diagonal(between, np.inf)
    pairs = 1.0 - vectors @ vectors.T
    upper = np.triu_indices(len(vectors), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    genuine, impostor = pairs[upper][same], pairs[upper][~same]
    own, planted = np.asarray(own), np.asarray(planted)
    return {
        "own_p99": np.percentile(own, 99),
        "own_p995": np.percentile(own, 99.5),
        "own_beyond": float(np.mean(own > model.identity_max_distance)),
        "planted_p05": np.percentile(planted, 0.5),
        "planted_within": float(np.mean(planted <= model.identity_max_distance)),
        "halves_p90": np.percentile(halves, 90),
        "halves_max": float(np.max(halves)),
        "closest_people": float(between.min()),
        "impostor_accepted": float(np.mean(impostor <= model.verification_threshold)),
        "genuine_accepted": float(np.mean(genuine <= model.verification_threshold)),
    }


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


SHARES = (0.25, 0.5, 0.75, 1.0)


def share_figures(dev: Path, found: dict, model: FaceModel) -> list[tuple[float, dict, dict]]:
    """Each share of a person's nearest faces: the whole gallery, and the mean over 16
    half-galleries (8 random splits of the people; strangers: the never-enrolled and the other
    half's probes) with how many of them named more strangers than the 1% target."""
    replayed = replay_gallery(dev, found, default_setting(model))
    people = np.unique(replayed.labels)
    rng = np.random.default_rng(1)
    splits = []
    for _ in range(8):
        order = rng.permutation(people)
        splits += [np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])]
    rows = []
    for share in SHARES:
        whole = score_replay(replayed, model, share)
        halves = [score_replay(replayed, model, share, half) for half in splits]
        rows.append(
            (
                share,
                whole,
                {
                    "dir": float(np.mean([h["dir"] for h in halves])),
                    "far": float(np.mean([h["far"] for h in halves])),
                    "far_sd": float(np.std([h["far"] for h in halves])),
                    "over": float(np.mean([h["far"] > 0.01 for h in halves])),
                },
            )
        )
    return rows


def ablation(dev: Path, found: dict, model: FaceModel) -> list[tuple[str, dict]]:
    """Each gate, the identity filter, keep-one-face, the detector's floor and the mirror
    average of `model` switched off or moved, each replayed (the gallery's own calibration
    each time)."""
    defaults, identity = model.gates, model.identity_max_distance
    floor = model.engine.min_detection_score if model.engine.uses_sface else 0.0
    none = replace(
        defaults,
        min_confidence=0.0,
        min_face_size=0,
        min_blur_score=0.0,
        dominance_ratio=0.0,
        duplicate_hash_distance=-1,
    )

    def gate(label: str, **changed) -> Setting:
        return Setting(label, replace(defaults, **changed), identity, floor=floor)

    settings = [
        Setting("defaults", defaults, identity, floor=floor),
        Setting("no gate, no identity filter, no keep-one-face", none, None, False, floor),
        Setting("no gate (identity filter and keep-one-face on)", none, identity, floor=floor),
        Setting("without keep-one-face", defaults, identity, False, floor),
        gate("size floor off", min_face_size=0),
        *(gate(f"size floor {size} px", min_face_size=size) for size in (50, 60, 80)),
        gate("blur floor off", min_blur_score=0.0),
        *(gate(f"blur floor {blur:g}", min_blur_score=blur) for blur in (30.0, 40.0, 80.0)),
        gate("confidence floor off", min_confidence=0.0),
        *(gate(f"confidence floor {c:g}", min_confidence=c) for c in (0.7, 0.8, 0.9)),
        gate("dominance rule off (largest face wins)", dominance_ratio=0.0),
        gate("dominance ratio 1.5", dominance_ratio=1.5),
        gate("dominance ratio 4", dominance_ratio=4.0),
        gate("duplicates kept", duplicate_hash_distance=-1),
        Setting("identity filter off", defaults, None, floor=floor),
        *(
            Setting(
                f"identity filter at {factor:g}x ({identity * factor:.3f})",
                defaults,
                round(identity * factor, 4),
                floor=floor,
            )
            for factor in (0.7, 1.5)
        ),
        Setting("no mirror average", defaults, identity, floor=floor, mirror=False),
    ]
    if model.engine.uses_sface:
        settings += [
            Setting(f"detector floor {f:g}", defaults, identity, floor=f)
            for f in (REPLAY_FLOOR, 0.3, 0.7)
            if f != floor
        ]
    return [(setting.label, replay(dev, found, model, setting)) for setting in settings]


# --- report -------------------------------------------------------------------------------------
def report(builds: list[dict], deepface: float, sample: int, measured: list[dict]) -> str:
    commit = short_commit()
    lines = [
        BEGIN,
        "## Recognition quality at a domain's scale: the LFW development set (`make bench-dev`)",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Commit: {commit}. "
        "Data: `../shared/datasets/build_lfw_dev.py` (849 people from 2,996 photos, 849 probes, "
        "1,000 never-enrolled people); the other half of LFW is never used.",
        "",
        "### The product, end to end, with each offline face model",
        "",
        "Each model built as a folder domain set to it (`facerec domains add --model`) with "
        "`run_domain` (what `facerec run` does) from an empty storage root, then scored as "
        "`facerec evaluate` scores it (the largest face of each photo; a photo with no face "
        "counts as a miss or, for a stranger, as no name given). DIR and FAR at the gallery's "
        "own calibrated operating point; the curve's DIR at FAR <= 0.1% is another threshold "
        "on the same scores.",
        "",
        "| model | rank-1 | DIR | FAR | wrong name to an enrolled person | DIR at FAR <= 0.1% "
        "(curve) | the same, LFW's errata applied | recognize s/photo median / p95 "
        "| people / faces in the gallery | build s (s/photo) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for built in builds:
        figures = built["figures"]
        first = next(p for p in figures["curve"] if p["far_limit"] == 0.001)
        corrected = built["errata"]["dir_far_0_1_corrected"]
        ours = built["build_seconds"] / built["photos"]
        lines.append(
            f"| {built['model'].name} | {figures['rank1']:.3f} | {figures['dir']:.3f} | "
            f"{figures['far']:.3f} | {figures['wrong_name_rate']:.3f} | {first['dir']:.3f} "
            f"(FAR {first['far']:.3f}) | {corrected:.3f} | "
            f"{figures['seconds_per_photo_median']:.3f} / "
            f"{figures['seconds_per_photo_p95']:.3f} | {built['people']} / {built['faces']} | "
            f"{built['build_seconds']:.0f} ({ours:.3f}) |"
        )
    lines.append("")
    for built in builds:
        point, figures = built["point"], built["figures"]
        lines += [
            f"**{built['model'].name}**: operating point calibrated by the gallery itself for a "
            f"{point.target_far:.0%} target: score <= {point.threshold} (person distance: the "
            f"nearest share {point.nearest_share} of a person's faces); it expected DIR "
            f"{point.expected_dir} and FAR {point.expected_far} ({point.stranger_trials} "
            f"simulated strangers; 95% upper bound {point.far_upper_bound}). DIR against FAR "
            "at other thresholds: "
            + ", ".join(f"FAR {p['far']:.3f} → DIR {p['dir']:.3f}" for p in figures["curve"])
            + ". The never-enrolled photos nearest to someone (score, taken for): "
            + ", ".join(
                f"{name} ({score}, {who})" for name, who, score in built["errata"]["lowest"]
            )
            + ".",
            "",
        ]
    default = builds[0]
    ours = default["build_seconds"] / default["photos"]
    lines += [
        "LFW's errata (its index.html) say Carlos_Ruckauf_0001, filed under a person with one "
        "photo and so among the never-enrolled here, is an image of Eduardo Duhalde, who is "
        "enrolled: the right answer for it is his name, and the column 'LFW's errata applied' "
        "leaves it out of the strangers (one of the 999 others may then be named). Ashley Olsen "
        "(never enrolled) is Mary-Kate Olsen's twin.",
        "",
        f"DeepFace.represent (Dlib, dlib) on {sample} of the gallery photos: {deepface:.3f} s "
        f"per photo, one process; {deepface * default['photos']:.0f} s for the whole set. The "
        f"whole domain build with {default['model'].name} (detection, gates, embedding, "
        f"gallery, checks, Dagster and SQLite) is {deepface / ours:.1f}× faster.",
        "",
        *files_lines(default["files"], default["model"].name),
    ]
    for entry in measured:
        lines += settings_lines(entry)
    lines += [
        "",
        f"### Promotion checks on the {default['model'].name} gallery and on damaged copies of it",
        "",
        "Each an incremental `run_domain` on a copy of the gallery folder, then undone.",
        "",
        "| scenario | version | status | failed checks (figures) |",
        "|---|---|---|---|",
    ]
    for outcome in default["scenarios"]:
        failed = "; ".join(
            f"{name} ({_shown(figures)})" for name, figures in outcome["failed"].items()
        )
        lines.append(
            f"| {outcome['scenario']} | v{outcome['version']} | {outcome['status']} | "
            f"{failed or 'none'} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def settings_lines(entry: dict) -> list[str]:
    """The replay table, the distances and the person-distance share of one model."""
    model, distances = entry["model"], entry["distances"]
    lines = [
        "",
        f"### {model.name}: each setting judged by recognition",
        "",
        f"Each photo detected and embedded once by the {model.name} engine "
        f"({entry['detect_seconds']:.0f} s for {entry['photos']} photos on {entry['workers']} "
        "processes, every face kept down to a detection score of "
        f"{REPLAY_FLOOR if model.engine.uses_sface else 0}); the product's functions replayed "
        "per setting (the gallery's own calibration each time).",
        "",
        "| setting | faces | people | rank-1 | DIR | FAR | wrong name |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, result in entry["rows"]:
        lines.append(
            f"| {label} | {result['faces']} | {result['people']} | {result['rank1']:.3f} | "
            f"{result['dir']:.3f} | {result['far']:.3f} | {result['wrong']:.3f} |"
        )
    lines += [
        "",
        f"Distances ({model.name}'s accepted faces, before the identity filter): a face against "
        f"the mean of its person's other faces, 99th percentile {distances['own_p99']:.3f}, "
        f"99.5th {distances['own_p995']:.3f}; someone else's face planted among a person's "
        f"photos, 0.5th percentile {distances['planted_p05']:.3f}. The identity filter at "
        f"{model.identity_max_distance} quarantines {distances['own_beyond']:.2%} of true faces "
        f"and lets {distances['planted_within']:.2%} of planted ones through. The two halves "
        f"of one person's photos: 90th percentile {distances['halves_p90']:.4f}, at most "
        f"{distances['halves_max']:.4f}; the closest two different people "
        f"{distances['closest_people']:.4f} (`distinct_identities` fails below "
        f"{model.distinct_min_distance}). The 1:1 threshold {model.verification_threshold} "
        f"accepts {distances['impostor_accepted']:.3%} of impostor pairs and "
        f"{distances['genuine_accepted']:.1%} of genuine pairs.",
        "",
        f"Person distance ({model.name}: the mean of a person's max(2, 1 + share × n) nearest "
        f"faces; the model uses {model.nearest_share}), calibrated per gallery:",
        "",
        "| share | DIR | FAR | half-galleries: DIR | FAR mean (sd) | over the 1% target |",
        "|---|---|---|---|---|---|",
    ]
    for share, whole, halves in entry["shares"]:
        lines.append(
            f"| {share:g} | {whole['dir']:.3f} | {whole['far']:.3f} | {halves['dir']:.3f} | "
            f"{halves['far']:.2%} ({halves['far_sd']:.2%}) | {halves['over']:.0%} |"
        )
    return lines


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


def files_lines(files: dict, model: str) -> list[str]:
    made = files["previews"].get("made_this_run", 0)
    seconds = files["previews_seconds"] or 0.0
    each = 1000 * seconds / max(made, 1)
    stages = ", ".join(
        f"{stage} {count} ({size / 1e6:.1f} MB)" for stage, count, size in files["by_stage"]
    )
    return [
        f"Files the {model} build wrote, each an `artifacts` row: {stages}. The previews stage "
        f"(400 px thumbnail, 800 px web copy and blurhash of each accepted photo and of its "
        f"face) made those of {made} photos and faces in {seconds:.0f} s ({each:.0f} ms each) "
        f"within the build above. `facerec artifacts verify` of the domain "
        f"({files['verify_rows']} rows, every file hashed): {files['verify_seconds']:.1f} s, "
        + ("no problem found." if files["verify_ok"] else "PROBLEMS FOUND."),
    ]


def main() -> None:
    parser = dev_set_parser(__doc__, "the folder build_lfw_dev.py wrote (env FACEREC_DEV_SET)")
    parser.add_argument("--deepface-sample", type=int, default=150)
    parser.add_argument(
        "--models", default="sface,dlib", help="face models, the first one's checks replayed"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    if not args.dev_set:
        parser.error(
            "give --dev-set DIR or FACEREC_DEV_SET (build it with "
            "../shared/datasets/build_lfw_dev.py)"
        )
    dev = checked_dev_set(parser, args.dev_set)
    models = [face_model(name) for name in args.models.split(",")]
    with tempfile.TemporaryDirectory(prefix="facerec-dev-") as tmp:
        builds = []
        for index, model in enumerate(models):
            print(f"building and scoring the dev-set domain with {model.name}...", flush=True)
            builds.append(build_and_score(dev, Path(tmp) / model.name, model, index == 0))
        models_dir = builds[0]["models_dir"]
        gallery_photos = sorted((dev / "gallery").rglob("*.jpg"))
        sample = gallery_photos[:: max(1, len(gallery_photos) // args.deepface_sample)]
        sample = sample[: args.deepface_sample]
        print(f"DeepFace on {len(sample)} photos...", flush=True)
        deepface = deepface_seconds(sample, models_dir)
        every = gallery_photos + sorted((dev / "probes").glob("*.jpg"))
        every += sorted((dev / "unknown").glob("*.jpg"))
        measured = []
        for model in models:
            print(f"{model.name}: every photo detected and embedded once...", flush=True)
            start = time.perf_counter()
            found = detect_everything(every, models_dir, args.workers, replay_config(model))
            seconds = time.perf_counter() - start
            measured.append(
                {
                    "model": model,
                    "photos": len(every),
                    "workers": args.workers,
                    "detect_seconds": seconds,
                    "rows": ablation(dev, found, model),
                    "distances": distance_figures(dev, found, model),
                    "shares": share_figures(dev, found, model),
                }
            )
            del found
    section = report(builds, deepface, len(sample), measured)
    print(section)
    write_section(Path(args.output), section, BEGIN, END)


if __name__ == "__main__":
    main()
