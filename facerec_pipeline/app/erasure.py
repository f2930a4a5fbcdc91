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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.app.erasure_files import remove_path, scrub_batch, scrub_inspection_cache
from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.gallery.loading import (
    file_checksums,
    index_path,
    load_batches,
    served_paths,
)
from facerec_pipeline.core.gallery.publish import (
    POINTER_FILE,
    move_aside,
    pointer_of,
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
            remove_path(index)
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


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _needles(person: Person, folder: str | None, shas: set[str]) -> list[str]:
    """What names the person in text (longest first): their key, names, folder, photo hashes."""
    key, name = person.person_key, person.normalized_name
    return sorted(
        {n for n in (key, name, person.full_name, folder) if n} | shas | {sha[:12] for sha in shas},
        key=len,
        reverse=True,
    )


def _remove_reports(session: Session, settings: Settings, code: str, person: Person) -> int:
    """Delete the report folders of `code` that may show the person; how many."""
    # Reports of every version built while the person was in the domain show their face.
    since = _aware(person.created_at)
    report_versions = [
        g.version
        for g in session.scalars(select(Gallery).where(Gallery.domain == code))
        if since is None or g.created_at is None or _aware(g.created_at) >= since
    ]
    reports = settings.storage_dir / "reports" / code
    return sum(remove_path(reports / f"gallery_v{v:04d}") for v in report_versions)


def _delete_rows(session: Session, person: Person, shas: set[str]) -> dict[str, int]:
    """Delete the person's rows (their embeddings when no other face is of the same photo),
    anonymize their paid calls; the counts."""
    counts: dict[str, int] = {}
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
    session.execute(delete(Face).where(Face.person_id == person.id))
    session.execute(delete(Image).where(Image.person_id == person.id))
    session.flush()
    still_faced = set(session.scalars(select(Face.image_sha256).where(Face.image_sha256.in_(shas))))
    counts["face_embeddings"] = session.execute(
        delete(FaceEmbedding).where(FaceEmbedding.image_sha256.in_(shas - still_faced))
    ).rowcount
    session.delete(person)
    session.flush()
    return counts


def _remove_unnamed_files(
    session: Session, settings: Settings, photo_paths: set[str], crop_paths: set[str]
) -> dict[str, int]:
    """Delete the person's photos and crops that no remaining row names; the counts."""
    used_photos = set(
        session.scalars(select(Image.file_path).where(Image.file_path.in_(photo_paths)))
    )
    used_crops = set(session.scalars(select(Face.crop_path).where(Face.crop_path.in_(crop_paths))))
    return {
        "photo_files": sum(
            remove_path(settings.absolute(p)) for p in sorted(photo_paths - used_photos)
        ),
        "crop_files": sum(
            remove_path(settings.absolute(p)) for p in sorted(crop_paths - used_crops)
        ),
    }


def _redact_rows(session: Session, code: str, needles: list[str]) -> None:
    """Take the person out of what other rows of `code` say: check figures, evaluations, run
    errors and counts."""
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


def _forget_artifacts(
    session: Session, settings: Settings, code: str, person_id: int, shas: set[str]
) -> dict[str, int]:
    """Remove the artifact files of the person's photos that no remaining image of `code` has,
    forget every artifact row whose file is gone, and delete their processing failures; the
    counts."""
    remaining = set(
        session.scalars(select(Image.sha256).where(Image.domain == code, Image.sha256.in_(shas)))
    )
    erased = shas - remaining
    store = ArtifactStore(settings)
    theirs = session.scalars(
        select(Artifact.path).where(Artifact.domain == code, Artifact.image_sha256.in_(erased))
    ).all()
    counts = {
        "artifact_files": store.remove(session, code, [settings.absolute(p) for p in theirs]),
        "artifact_rows_of_removed_files": store.forget_missing(session, code),
    }
    session.execute(
        delete(ProcessingFailure).where(
            ProcessingFailure.domain == code,
            or_(
                ProcessingFailure.person_id == person_id, ProcessingFailure.image_sha256.in_(erased)
            ),
        )
    )
    return counts


def _record_erasure(
    session: Session, code: str, key: str, operator: str, counts: dict[str, Any]
) -> Erasure:
    """Exclude the person's key from later source refreshes and add the audit row (no data of
    theirs, only the key's hash and the counts)."""
    digest = person_key_hash(key)
    if digest not in excluded_key_hashes(session, code):
        session.add(ErasedPerson(domain=code, person_key_sha256=digest))
    audit = Erasure(domain=code, person_key_sha256=digest, operator=operator, counts=counts)
    session.add(audit)
    session.flush()
    return audit


def erase_person(
    session: Session, settings: Settings, code: str, person: Person, operator: str
) -> ErasureResult:
    """Erase `person` from `code` in this session (see the module's docstring). Files are
    deleted as it goes; run again after a failure, it finds what is left."""
    key, name, person_id = person.person_key, person.normalized_name, person.id
    folder = key.split(":", 1)[1] if key.startswith("folder:") else None
    images = _images(session, person)
    faces = _faces(session, person)
    shas = {image.sha256 for image in images} | {face.image_sha256 for face in faces}
    needles = _needles(person, folder, shas)
    counts: dict[str, Any] = {"people": 1, "images": len(images), "faces": len(faces)}
    versions = scrub_versions(session, settings, code, name)
    counts["gallery_batch_rows"] = versions["batch_rows"]
    counts["gallery_versions_scrubbed"] = len(versions["scrubbed"])
    counts["gallery_versions_retired"] = len(versions["retired"])
    counts["report_folders"] = _remove_reports(session, settings, code, person)
    # Rows, then the files no remaining row names.
    crop_paths = {face.crop_path for face in faces if face.crop_path}
    photo_paths = {image.file_path for image in images if image.file_path}
    counts.update(_delete_rows(session, person, shas))
    counts.update(_remove_unnamed_files(session, settings, photo_paths, crop_paths))
    counts["crop_folders"] = remove_path(settings.training_pass_dir(code) / name)
    counts["folder_scan_entries"] = scrub_inspection_cache(
        settings.cache_dir / "folder_scan" / f"{code}.json", folder, shas
    )
    # What other rows say of them: check figures, evaluations, run errors.
    _redact_rows(session, code, needles)
    # Their files' rows (previews, crops, originals, batch copies), and every row whose file an
    # erasure removed (crop folders, batch folders, reports); their processing failures.
    counts.update(_forget_artifacts(session, settings, code, person_id, shas))
    audit = _record_erasure(session, code, key, operator, counts)
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
