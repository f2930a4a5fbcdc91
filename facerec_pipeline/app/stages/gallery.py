"""gallery: the identity-consistency filter and, when the accepted faces changed, a new candidate
version in batches with its operating point, evaluation and report. The version serves only once
its checks pass (promotion_checks.py, production_gallery.py)."""

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.app.promotion import latest_version
from facerec_pipeline.app.stages.gallery_report import (
    adopt_version_files,
    build_report,
    previews_metadata,
)
from facerec_pipeline.app.stages.stage_run import (
    StageFailed,
    StageResult,
    StageRun,
    version_label,
)
from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.face_models import FaceModel, current_faces
from facerec_pipeline.core.faces.engine import l2_normalize
from facerec_pipeline.core.gallery.identity import consistency_decisions
from facerec_pipeline.core.gallery.loading import (
    damaged_files,
    file_checksums,
    index_path,
    served_paths,
)
from facerec_pipeline.core.gallery.open_set import OperatingPoint, calibrate, rule_text
from facerec_pipeline.core.gallery.publish import (
    GalleryEntry,
    content_hash,
    next_batch_number,
    ordered_entries,
    write_batches,
)
from facerec_pipeline.core.gallery.self_evaluation import evaluate
from facerec_pipeline.db.models import Gallery

GALLERY_FACE_COLUMNS = [
    "gallery_id",
    "domain",
    "face_id",
    "person_id",
    "identity_status",
    "identity_reason",
    "centroid_distance",
]


def gallery_candidates(
    candidates: pd.DataFrame, faces: pd.DataFrame, embeddings: pd.DataFrame, model_config: str
) -> pd.DataFrame:
    """Accepted faces with their embedding under `model_config` and their person's names."""
    current = embeddings[embeddings["model_config"] == model_config]
    accepted = faces[faces["status"] == "accepted"][["id", "crop_path"]].rename(
        columns={"id": "face_id"}
    )
    people = candidates[["id", "full_name", "normalized_name", "wikidata_id"]].rename(
        columns={"id": "person_id"}
    )
    return (
        current.merge(accepted, on="face_id")
        .merge(people, on="person_id")
        .sort_values("face_id")
        .reset_index(drop=True)
    )


def identity_filter(frame: pd.DataFrame, vectors: np.ndarray, threshold: float) -> pd.DataFrame:
    """Adds identity_status, identity_reason and centroid_distance per face."""
    status = np.empty(len(frame), dtype=object)
    reason = np.empty(len(frame), dtype=object)
    distance = np.full(len(frame), np.nan)
    for _, index in frame.groupby("person_id").groups.items():
        rows = np.asarray(list(index))
        for row, decision in zip(
            rows, consistency_decisions(vectors[rows], threshold), strict=True
        ):
            status[row] = "accepted" if decision.accepted else "quarantined"
            reason[row] = decision.reason
            if decision.centroid_distance is not None:
                distance[row] = decision.centroid_distance
    return frame.assign(identity_status=status, identity_reason=reason, centroid_distance=distance)


@dataclass
class GalleryFaces:
    """The faces a version is built from: every accepted face with its identity decision, their
    unit vectors, which ones the filter kept, and the kept ones in gallery order."""

    frame: pd.DataFrame
    vectors: np.ndarray
    keep: np.ndarray
    entries: list[GalleryEntry]

    @property
    def people(self) -> int:
        return len({entry.person_id for entry in self.entries})

    @property
    def quarantined(self) -> int:
        return int((~self.keep).sum())


def gallery_faces(
    run: StageRun,
    model: FaceModel,
    candidates: pd.DataFrame,
    detected_faces: pd.DataFrame,
    face_embeddings: pd.DataFrame,
) -> GalleryFaces:
    """The accepted faces of the domain's current face configuration through the identity
    filter; StageFailed when no face is left."""
    code, settings = run.domain, run.settings
    frame = gallery_candidates(candidates, detected_faces, face_embeddings, model.engine.model_key)
    if frame.empty:
        raise StageFailed(
            f"domain {code!r} has no accepted face to build a gallery from; see "
            f"`facerec skips --domain {code}`"
        )
    vectors = l2_normalize(
        np.stack([np.frombuffer(blob, dtype="<f4") for blob in frame["embedding"]])
    )
    frame = identity_filter(frame, vectors, model.identity_max_distance)
    keep = (frame["identity_status"] == "accepted").to_numpy()
    entries = ordered_entries(
        [
            GalleryEntry(
                face_id=int(row.face_id),
                person_id=int(row.person_id),
                person=row.full_name,
                normalized_name=row.normalized_name,
                wikidata_id=row.wikidata_id if isinstance(row.wikidata_id, str) else None,
                image_sha256=row.image_sha256,
                crop_path=settings.absolute(row.crop_path),
                vector=vectors[position],
            )
            for position, row in enumerate(frame.itertuples())
            if keep[position]
        ]
    )
    if not entries:
        raise StageFailed(f"every face of domain {code!r} was quarantined")
    return GalleryFaces(frame, vectors, keep, entries)


def new_version(
    run: StageRun,
    session: Session,
    model: FaceModel,
    faces: GalleryFaces,
    digest: str,
    target_far: float,
) -> Gallery:
    """Calibrate, evaluate and write a new candidate version of the faces (batches, index and
    checksums), with its row added to the session."""
    code, settings, config = run.domain, run.settings, model.engine
    entries = faces.entries
    matrix = np.stack([entry.vector for entry in entries])
    labels = [entry.normalized_name for entry in entries]
    figures = evaluate(matrix, labels)
    point = calibrate(
        matrix,
        np.unique(labels, return_inverse=True)[1],
        target_far,
        fallback_threshold=model.verification_threshold,
        share=model.nearest_share,
    )
    version = (
        session.scalar(select(func.max(Gallery.version)).where(Gallery.domain == code)) or 0
    ) + 1
    now = datetime.now(UTC)
    known_batches = session.scalars(select(Gallery.batch_paths).where(Gallery.domain == code)).all()
    batches = write_batches(
        settings.batched_dir(code),
        entries,
        domain=code,
        version=version,
        model_config=config.model_key,
        created_at=now,
        first_batch=next_batch_number(known_batches),
        run_id=run.run_id,
        engine_config=asdict(config),
        artifacts=ArtifactStore(settings),
    )
    checksums = file_checksums(
        settings.storage_dir,
        served_paths(batches, index_path(settings.batched_dir(code), version)),
    )
    target = Gallery(
        domain=code,
        version=version,
        content_sha256=digest,
        model_config=config.model_key,
        dim=int(faces.vectors.shape[1]),
        batch_paths=[settings.relative(path) for path in batches],
        person_count=faces.people,
        face_count=len(entries),
        quarantined_count=faces.quarantined,
        evaluation=figures,
        run_id=run.run_id,
        created_at=now,
        status="candidate",
        checks={},
        operating_point=point.to_dict(),
        file_checksums=checksums,
    )
    session.add(target)
    session.flush()
    return target


def current_or_new_version(
    run: StageRun, session: Session, model: FaceModel, faces: GalleryFaces
) -> tuple[Gallery, bool]:
    """The newest version when it holds exactly these faces under the same operating point and
    its files are whole; else a new version. Returns (version, built now)."""
    code = run.domain
    target_far = get_domain(session, code).target_far
    # The operating point is part of what a version serves: a new target FAR or decision rule,
    # a new version.
    rule = rule_text(model.nearest_share)
    digest = content_hash(faces.entries, f"{model.engine.model_key}|far{target_far}|{rule}")
    latest = latest_version(session, code)
    if latest is None or latest.content_sha256 != digest:
        return new_version(run, session, model, faces, digest, target_far), True
    # The newest version holds these faces, but a damaged file of it would fail its checks on
    # every run: it is built again from the database as a new version instead.
    damaged = damaged_files(run.settings.storage_dir, latest.file_checksums or {})
    if not damaged:
        return latest, False
    run.log.warning(
        f"gallery[{code}]: v{latest.version} holds these faces but its files are "
        f"damaged ({'; '.join(damaged[:3])}): built again as a new version"
    )
    return new_version(run, session, model, faces, digest, target_far), True


def build_gallery(
    run: StageRun,
    model: FaceModel,
    candidates: pd.DataFrame,
    raw_images: pd.DataFrame,
    detected_faces: pd.DataFrame,
    face_embeddings: pd.DataFrame,
) -> StageResult:
    """Identity decisions per face (table `gallery_faces`) and, when the accepted faces changed,
    a new candidate version in batches with its report."""
    code, settings = run.domain, run.settings
    # Rows of earlier face configurations are kept in `faces`, never mixed in.
    detected_faces = current_faces(detected_faces, model)
    faces = gallery_faces(run, model, candidates, detected_faces, face_embeddings)
    frame, keep = faces.frame, faces.keep
    with run.session() as session:
        target, built = current_or_new_version(run, session, model, faces)
        gallery_id, version, status = target.id, target.version, target.status
        figures = dict(target.evaluation or {})
        point = OperatingPoint.from_dict(target.operating_point)
        shown_previews = previews_metadata(settings, session, code, frame, keep, detected_faces)
    run.log.info(
        f"gallery[{code}]: version {version} ({'built' if built else f'unchanged, {status}'}): "
        f"{faces.people} people, {len(faces.entries)} faces, {faces.quarantined} quarantined"
    )
    report = (
        build_report(
            settings,
            code,
            version,
            frame,
            faces.vectors,
            keep,
            detected_faces,
            raw_images,
            figures,
            point,
        )
        if built
        else {}
    )
    with run.session() as session:  # reads only: the store writes in its own transactions
        adopted = adopt_version_files(settings, session, code)
    shown = {
        "gallery_version": version_label(code, version),
        "built_this_run": built,
        "status": status,
        "face_model": model.name,
        "people": faces.people,
        "faces": len(faces.entries),
        "quarantined": faces.quarantined,
        "quarantined_by_reason": dict(Counter(frame.loc[~keep, "identity_reason"])),
        "evaluation": figures,
        "operating_point": point.to_dict(),
        "expected_dir": point.expected_dir,
        "expected_far": point.expected_far,
        **report,
        **shown_previews,
        "files_adopted": adopted,
    }
    return StageResult(
        frame.assign(gallery_id=gallery_id, domain=code)[GALLERY_FACE_COLUMNS], shown
    )
