"""Erasing one person from a domain (`facerec people erase`): their rows, photos, crops, the
rows and crops of every stored gallery version, the reports that show them; an exclusion so the
source does not bring them back, and an audit row without their data. No Dagster here: the CLI
then runs the domain's pipeline, which publishes a version built without them.

Stored versions are scrubbed in place, the serving one included, before anything is rebuilt:
the person's rows leave `embeddings.npy`, `person_rows.npy`, `people.json`, `faces.json` and
`batch_metadata.json`, their crop folder goes, the faiss index is rebuilt, and the version's
`file_checksums` (and the production pointer) are rewritten, so every version stays loadable and
nothing served names them even if the rebuilt version fails its checks. A scrubbed version keeps
its calibrated operating point (its calibration already played each person as a stranger). A
version left with no face is retired: its files are deleted and its status is `retired`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.core.artifacts.store import ArtifactStore, fill_bytes
from facerec_pipeline.core.files import write_atomically
from facerec_pipeline.core.gallery.publish import (
    POINTER_FILE,
    file_checksums,
    index_path,
    load_batches,
    move_aside,
    pointer_of,
    served_paths,
    serving_row,
    write_prod_pointer,
)
from facerec_pipeline.db.exclusions import excluded_key_hashes, person_key_hash
from facerec_pipeline.db.models import (
    PRODUCTION,
    Artifact,
    ErasedPerson,
    Erasure,
    Face,
    FaceEmbedding,
    Gallery,
    GalleryEvaluation,
    GalleryFace,
    Image,
    Person,
    ProcessingFailure,
    SerpCall,
    SourceSkip,
    TrainingSession,
)
from facerec_pipeline.settings import Settings

RETIRED = "retired"  # a gallery version whose every face was erased: its files are gone
REDACTED = "(erased)"


class ErasureError(LookupError):
    pass


@dataclass
class ErasureResult:
    erasure_id: int
    counts: dict[str, int] = field(default_factory=dict)
    retired_versions: list[int] = field(default_factory=list)
    needles: list[str] = field(default_factory=list)  # for scrubbing logs elsewhere; not stored


def find_person(session: Session, code: str, who: str) -> Person:
    """The person of `code` whose normalized name or person_key is `who`."""
    get_domain(session, code)
    person = session.scalar(
        select(Person).where(
            Person.domain == code, or_(Person.normalized_name == who, Person.person_key == who)
        )
    )
    if person is not None:
        return person
    if person_key_hash(who) in excluded_key_hashes(session, code):
        raise ErasureError(f"{who!r} was already erased from domain {code!r}; nothing to do")
    raise ErasureError(
        f"domain {code!r} has no person {who!r} (give the normalized name or the person key, "
        f"e.g. 'folder:<name>' or 'wikidata:Q42'); `facerec gallery list --domain {code} --json`, "
        f"`facerec skips --domain {code}` and `facerec stats --domain {code}` show its people"
    )


def _faces(session: Session, person: Person) -> list[Face]:
    return list(session.scalars(select(Face).where(Face.person_id == person.id)))


def _images(session: Session, person: Person) -> list[Image]:
    return list(session.scalars(select(Image).where(Image.person_id == person.id)))


def _versions_holding(session: Session, person: Person) -> list[int]:
    return sorted(
        set(
            session.scalars(
                select(Gallery.version)
                .join(GalleryFace, GalleryFace.gallery_id == Gallery.id)
                .where(GalleryFace.person_id == person.id)
            )
        )
    )


def plan(session: Session, person: Person) -> dict[str, Any]:
    """What erasing `person` removes, as counts (nothing changes)."""
    images = _images(session, person)
    faces = _faces(session, person)
    return {
        "images": len(images),
        "faces": len(faces),
        "accepted_faces": sum(face.status == "accepted" for face in faces),
        "gallery_versions_holding_them": _versions_holding(session, person),
        "source_skips": session.scalar(
            select(func.count()).select_from(SourceSkip).where(SourceSkip.person_id == person.id)
        ),
    }


def redact(value: Any, needles: list[str]) -> Any:
    """`value` (JSON-like) with every needle in its strings and keys replaced."""
    if isinstance(value, str):
        for needle in needles:
            value = value.replace(needle, REDACTED)
        return value
    if isinstance(value, list):
        return [redact(item, needles) for item in value]
    if isinstance(value, dict):
        return {redact(key, needles): redact(item, needles) for key, item in value.items()}
    return value


def _remove(path: Path) -> int:
    if path.is_dir():
        shutil.rmtree(path)
        return 1
    if path.exists() or path.is_symlink():
        path.unlink()
        return 1
    return 0


def scrub_batch(
    batch_dir: Path, normalized_name: str, rewrite: Callable[[Path, Callable], Any]
) -> tuple[int, bool]:
    """Remove `normalized_name`'s rows and crops from one batch folder, rewriting its files
    through `rewrite(file, fill)` (the file with its artifact row). Returns (rows removed,
    whether the batch is now empty: then the folder is deleted)."""
    faces_file = batch_dir / "faces.json"
    if not faces_file.exists():
        return 0, False
    faces = json.loads(faces_file.read_text())
    keep = [i for i, face in enumerate(faces) if face["normalized_name"] != normalized_name]
    removed = len(faces) - len(keep)
    if not removed:
        return 0, False
    if not keep:
        shutil.rmtree(batch_dir)
        return removed, True
    matrix = np.load(batch_dir / "embeddings.npy", allow_pickle=False)
    if matrix.shape[0] == len(faces):
        matrix = matrix[keep]
    elif matrix.shape[0] != len(keep):  # len(keep): an erasure that died here wrote it already
        raise ValueError(
            f"{batch_dir}: embeddings.npy has {matrix.shape[0]} rows, faces.json {len(faces)}"
        )
    kept = [dict(faces[i], row=row) for row, i in enumerate(keep)]
    order = list(dict.fromkeys(face["normalized_name"] for face in kept))
    position = {name: i for i, name in enumerate(order)}
    rows = np.asarray([position[face["normalized_name"]] for face in kept], dtype=np.int32)
    rewrite(batch_dir / "embeddings.npy", lambda p: _save_npy(p, matrix))
    if (batch_dir / "people.json").exists():
        people = json.loads((batch_dir / "people.json").read_text())
        people = [p for p in people if p["normalized_name"] != normalized_name]
        rewrite(
            batch_dir / "people.json", fill_bytes(json.dumps(people, ensure_ascii=False).encode())
        )
        rewrite(batch_dir / "person_rows.npy", lambda p: _save_npy(p, rows))
    rewrite(faces_file, fill_bytes(json.dumps(kept, ensure_ascii=False, indent=1).encode()))
    metadata_file = batch_dir / "batch_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["people"] = [
        p for p in metadata.get("people", []) if p.get("normalized_name") != normalized_name
    ]
    metadata["person_count"] = len(order)
    metadata["face_count"] = len(kept)
    rewrite(metadata_file, fill_bytes(json.dumps(metadata, ensure_ascii=False, indent=1).encode()))
    _remove(batch_dir / normalized_name)
    return removed, False


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def scrub_versions(
    session: Session, settings: Settings, code: str, normalized_name: str
) -> dict[str, Any]:
    """Scrub every stored version of `code` of the person (see the module's docstring)."""
    rows_removed, scrubbed, retired = 0, [], []
    store = ArtifactStore(settings)

    def rewrite(target: Path, fill: Callable) -> None:
        store.rewrite(session, target, fill)

    for gallery in session.scalars(
        select(Gallery).where(Gallery.domain == code).order_by(Gallery.version)
    ):
        kept_paths, changed = [], False
        for stored in gallery.batch_paths or []:
            removed, empty = scrub_batch(settings.absolute(stored), normalized_name, rewrite)
            rows_removed += removed
            changed = changed or bool(removed)
            if not empty:
                kept_paths.append(stored)
        if not changed:
            continue
        index = index_path(settings.batched_dir(code), gallery.version)
        if not kept_paths:
            _remove(index)
            was_serving = gallery.status == PRODUCTION
            gallery.status = RETIRED
            gallery.batch_paths, gallery.file_checksums = [], {}
            gallery.person_count = gallery.face_count = 0
            session.flush()
            if was_serving:
                move_aside(settings.prod_dir(code) / POINTER_FILE)
            retired.append(gallery.version)
            continue
        loaded = load_batches(
            settings.storage_dir, code, gallery.version, gallery.model_config, kept_paths
        )
        if index.exists():
            from facerec_pipeline.core.gallery.search_index import build_ivf, save_index

            built = build_ivf(loaded.matrix.astype(np.float32))
            rewrite(index, lambda partial, built=built: save_index(built, partial))
        batches = [settings.absolute(p) for p in kept_paths]
        gallery.batch_paths = kept_paths
        gallery.file_checksums = file_checksums(settings.storage_dir, served_paths(batches, index))
        gallery.person_count = len(loaded.people)
        gallery.face_count = int(loaded.matrix.shape[0])
        session.flush()
        if gallery.status == PRODUCTION:
            write_prod_pointer(
                session, ArtifactStore(settings), settings.prod_dir(code), pointer_of(gallery)
            )
        scrubbed.append(gallery.version)
    return {"batch_rows": rows_removed, "scrubbed": scrubbed, "retired": retired}


def _scrub_inspection_cache(cache: Path, folder: str | None, shas: set[str]) -> int:
    """Drop the folder scan's entries of the person's files (by folder and content hash)."""
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        return 0
    kept = {
        key: entry
        for key, entry in entries.items()
        if not (
            (folder is not None and Path(key).parent.name == folder)
            or entry.get("facts", {}).get("sha256") in shas
        )
    }
    if len(kept) != len(entries):
        write_atomically(cache, json.dumps(kept).encode())
    return len(entries) - len(kept)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def erase_person(
    session: Session, settings: Settings, code: str, person: Person, operator: str
) -> ErasureResult:
    """Erase `person` from `code` in this session (see the module's docstring). Files are
    deleted as it goes; run again after a failure, it finds what is left."""
    key = person.person_key
    name = person.normalized_name
    folder = key.split(":", 1)[1] if key.startswith("folder:") else None
    images = _images(session, person)
    faces = _faces(session, person)
    shas = {image.sha256 for image in images} | {face.image_sha256 for face in faces}
    needles = sorted(
        {n for n in (key, name, person.full_name, folder) if n} | shas | {sha[:12] for sha in shas},
        key=len,
        reverse=True,
    )
    counts: dict[str, Any] = {"people": 1, "images": len(images), "faces": len(faces)}
    versions = scrub_versions(session, settings, code, name)
    counts["gallery_batch_rows"] = versions["batch_rows"]
    counts["gallery_versions_scrubbed"] = len(versions["scrubbed"])
    counts["gallery_versions_retired"] = len(versions["retired"])
    # Reports of every version built while the person was in the domain show their face.
    since = _aware(person.created_at)
    report_versions = [
        g.version
        for g in session.scalars(select(Gallery).where(Gallery.domain == code))
        if since is None or g.created_at is None or _aware(g.created_at) >= since
    ]
    reports = settings.storage_dir / "reports" / code
    counts["report_folders"] = sum(_remove(reports / f"gallery_v{v:04d}") for v in report_versions)
    # Rows, then the files no remaining row names.
    counts["gallery_faces"] = session.execute(
        delete(GalleryFace).where(GalleryFace.person_id == person.id)
    ).rowcount
    counts["source_skips"] = session.execute(
        delete(SourceSkip).where(SourceSkip.person_id == person.id)
    ).rowcount
    # Paid calls stay (they count against the month's budget), without who they were for.
    counts["serp_calls_anonymized"] = session.execute(
        update(SerpCall).where(SerpCall.person_id == person.id).values(person_id=None, query="")
    ).rowcount
    crop_paths = {face.crop_path for face in faces if face.crop_path}
    photo_paths = {image.file_path for image in images if image.file_path}
    session.execute(delete(Face).where(Face.person_id == person.id))
    session.execute(delete(Image).where(Image.person_id == person.id))
    session.flush()
    still_faced = set(session.scalars(select(Face.image_sha256).where(Face.image_sha256.in_(shas))))
    counts["face_embeddings"] = session.execute(
        delete(FaceEmbedding).where(FaceEmbedding.image_sha256.in_(shas - still_faced))
    ).rowcount
    session.delete(person)
    session.flush()
    used_photos = set(
        session.scalars(select(Image.file_path).where(Image.file_path.in_(photo_paths)))
    )
    used_crops = set(session.scalars(select(Face.crop_path).where(Face.crop_path.in_(crop_paths))))
    counts["photo_files"] = sum(
        _remove(settings.absolute(p)) for p in sorted(photo_paths - used_photos)
    )
    counts["crop_files"] = sum(
        _remove(settings.absolute(p)) for p in sorted(crop_paths - used_crops)
    )
    counts["crop_folders"] = _remove(settings.training_pass_dir(code) / name)
    counts["folder_scan_entries"] = _scrub_inspection_cache(
        settings.cache_dir / "folder_scan" / f"{code}.json", folder, shas
    )
    # What other rows say of them: check figures, evaluations, run errors.
    for gallery in session.scalars(select(Gallery).where(Gallery.domain == code)):
        gallery.checks = redact(gallery.checks or {}, needles)
        gallery.evaluation = redact(gallery.evaluation or {}, needles)
    for evaluation in session.scalars(
        select(GalleryEvaluation).where(GalleryEvaluation.domain == code)
    ):
        evaluation.figures = redact(evaluation.figures or {}, needles)
    for run in session.scalars(select(TrainingSession).where(TrainingSession.domain == code)):
        run.error = redact(run.error, needles) if run.error else run.error
        run.counts = redact(run.counts or {}, needles)
    # Their files' rows (previews, crops, originals, batch copies), and every row whose file an
    # erasure removed (crop folders, batch folders, reports); their processing failures.
    remaining = set(
        session.scalars(select(Image.sha256).where(Image.domain == code, Image.sha256.in_(shas)))
    )
    erased = shas - remaining
    store = ArtifactStore(settings)
    theirs = session.scalars(
        select(Artifact.path).where(Artifact.domain == code, Artifact.image_sha256.in_(erased))
    ).all()
    counts["artifact_files"] = store.remove(session, code, [settings.absolute(p) for p in theirs])
    counts["artifact_rows_of_removed_files"] = store.forget_missing(session, code)
    session.execute(
        delete(ProcessingFailure).where(
            ProcessingFailure.domain == code,
            or_(
                ProcessingFailure.person_id == person.id, ProcessingFailure.image_sha256.in_(erased)
            ),
        )
    )
    digest = person_key_hash(key)
    if digest not in excluded_key_hashes(session, code):
        session.add(ErasedPerson(domain=code, person_key_sha256=digest))
    audit = Erasure(domain=code, person_key_sha256=digest, operator=operator, counts=counts)
    session.add(audit)
    session.flush()
    return ErasureResult(audit.id, counts, versions["retired"], needles)


def rebuild_outcome(session: Session, code: str, run_id: str) -> tuple[int | None, str]:
    """What the run after an erasure did, in one line, and the version that serves now (scrubbed
    or rebuilt, without the person either way): a rollback's pin keeps the pinned version
    serving, so the rebuilt one may stay a candidate."""
    from facerec_pipeline.app.promotion import latest_version, pin_message

    serving = serving_row(session, code)
    newest = latest_version(session, code)
    if serving is None:
        return None, f"run {run_id} succeeded; no version serves"
    if newest is None or newest.version == serving.version:
        if serving.run_id == run_id:
            return serving.version, f"run {run_id} published v{serving.version}"
        return serving.version, (
            f"run {run_id} built no new version; v{serving.version}, scrubbed of them, serves"
        )
    outcome = (
        f"run {run_id} built v{newest.version}, which stays {newest.status}; "
        f"v{serving.version}, scrubbed of them, keeps serving"
    )
    domain = get_domain(session, code)
    if domain.pinned_version == serving.version:
        outcome += f" ({pin_message(domain)})"
    return serving.version, outcome


def record_outcome(
    session: Session, erasure_id: int, version: int | None, outcome: str, **counts: int
) -> None:
    audit = session.get(Erasure, erasure_id)
    audit.new_gallery_version = version
    audit.outcome = outcome
    audit.counts = {**(audit.counts or {}), **counts}


def vacuum_sqlite(path: Path) -> bool:
    """Rewrite a SQLite file so deleted rows leave no bytes behind (free pages, the WAL)."""
    import sqlite3

    if not path.is_file():
        return False
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return True
