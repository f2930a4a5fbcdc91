"""Figures about a domain's data, read from the database. No Dagster here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.core.artifacts.failures import MAX_ATTEMPTS
from facerec_pipeline.core.face_models import face_model
from facerec_pipeline.core.gallery.publish import serving_row
from facerec_pipeline.db.models import (
    Domain,
    Face,
    GalleryFace,
    Image,
    Person,
    ProcessingFailure,
    SerpCall,
    SourceSkip,
)

PAID_SOURCES = {"serp"}


def sourcing_figures(
    images_by_person_source: list[tuple[int, str]],
    person_ids: list[int],
    wikidata_ids: list[str | None],
    target: int,
    serp_cost_per_call: float,
) -> dict[str, Any]:
    """Figures about where a domain's usable photos came from. `images_by_person_source`: one
    (person id, source) per approved photo."""
    total = len(images_by_person_source)
    free = sum(source not in PAID_SOURCES for _, source in images_by_person_source)
    per_person: dict[int, int] = {}
    paid_people = set()
    for person_id, source in images_by_person_source:
        per_person[person_id] = per_person.get(person_id, 0) + 1
        if source in PAID_SOURCES:
            paid_people.add(person_id)
    served_free = sum(1 for p in person_ids if per_person.get(p) and p not in paid_people)
    seen: dict[str, int] = {}
    for qid in wikidata_ids:
        if qid:
            seen[qid] = seen.get(qid, 0) + 1
    return {
        "free_image_share": round(free / total, 4) if total else None,
        # Each person served by free photos alone is one paid search call not made.
        "estimated_cost_saved": round(served_free * serp_cost_per_call, 4),
        "people_below_target": sum(per_person.get(p, 0) < target for p in person_ids),
        "duplicate_wikidata_ids": sorted(q for q, n in seen.items() if n > 1),
    }


def domain_sourcing(
    session: Session, domain: Domain, serp_cost_per_call: float = 0.015
) -> dict[str, Any]:
    """sourcing_figures for the domain's stored people and approved photos."""
    code = domain.code
    present_people = session.execute(
        select(Person.id, Person.wikidata_id).where(
            Person.domain == code, Person.removed_at.is_(None)
        )
    ).all()
    approved = session.execute(
        select(Image.person_id, Image.source).where(
            Image.domain == code, Image.removed_at.is_(None), Image.status == "approved"
        )
    ).all()
    return sourcing_figures(
        [(row.person_id, row.source) for row in approved],
        [row.id for row in present_people],
        [row.wikidata_id for row in present_people],
        domain.images_per_person,
        serp_cost_per_call,
    )


def month_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The first instant of `moment`'s calendar month (UTC) and of the month after."""
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, following


def serp_spent_in_month(session: Session, code: str, moment: datetime | None = None) -> float:
    """USD of the domain's paid search calls recorded in the UTC calendar month of `moment`
    (now by default): what its monthly `serp_budget` has already paid for."""
    start, following = month_bounds(moment or datetime.now(UTC))
    spent = session.scalar(
        select(func.coalesce(func.sum(SerpCall.estimated_cost), 0.0)).where(
            SerpCall.domain == code, SerpCall.created_at >= start, SerpCall.created_at < following
        )
    )
    return float(spent or 0.0)


def current_detector_config(session: Session, code: str) -> str | None:
    """The face configuration that describes the domain: that of its face model when the
    domain has rows of it, else that of its newest rows. Rows of earlier configurations are
    kept, never deleted, but are not counted."""
    default = face_model(get_domain(session, code).face_model).detector_config
    if session.scalar(
        select(Face.id).where(Face.domain == code, Face.detector_config == default).limit(1)
    ):
        return default
    return session.scalar(
        select(Face.detector_config).where(Face.domain == code).order_by(Face.id.desc()).limit(1)
    )


def _serp_cost_by_month(session: Session, code: str) -> dict[str, float]:
    """USD of the domain's paid search calls per calendar month ("YYYY-MM")."""
    cost_by_month: dict[str, float] = {}
    for created_at, cost in session.execute(
        select(SerpCall.created_at, SerpCall.estimated_cost).where(SerpCall.domain == code)
    ).all():
        month = created_at.strftime("%Y-%m")
        cost_by_month[month] = round(cost_by_month.get(month, 0.0) + cost, 4)
    return cost_by_month


def _face_figures(session: Session, code: str) -> tuple[dict[str, int], int, int]:
    """(rejections by reason, accepted faces, people with an accepted face) among the faces of
    the domain's present photos, in its current face configuration."""
    present_faces = (
        select(Face.status, Face.rejection_reason, Face.person_id)
        .join(Image, Image.id == Face.image_id)
        .where(Face.domain == code, Image.removed_at.is_(None))
        .where(Face.detector_config == current_detector_config(session, code))
        .subquery()
    )
    rejections = dict(
        session.execute(
            select(present_faces.c.rejection_reason, func.count())
            .where(present_faces.c.status == "rejected")
            .group_by(present_faces.c.rejection_reason)
        ).all()
    )
    accepted = session.scalar(
        select(func.count()).select_from(present_faces).where(present_faces.c.status == "accepted")
    )
    people_with_faces = session.scalar(
        select(func.count(func.distinct(present_faces.c.person_id))).where(
            present_faces.c.status == "accepted"
        )
    )
    return rejections, accepted, people_with_faces


def _production_gallery(session: Session, code: str) -> dict[str, Any] | None:
    """The version that serves the domain, in figures; None when none serves."""
    prod = serving_row(session, code)
    if prod is None:
        return None
    quarantined = dict(
        session.execute(
            select(GalleryFace.identity_reason, func.count())
            .where(GalleryFace.gallery_id == prod.id, GalleryFace.identity_status != "accepted")
            .group_by(GalleryFace.identity_reason)
        ).all()
    )
    return {
        "version": prod.version,
        "people": prod.person_count,
        "faces": prod.face_count,
        "quarantined": quarantined,
        "model_config": prod.model_config,
        "published_at": prod.published_at.isoformat() if prod.published_at else None,
        "batches": prod.batch_paths,
        "evaluation": prod.evaluation,
        "operating_point": prod.operating_point,
    }


def domain_stats(session: Session, code: str, serp_cost_per_call: float = 0.015) -> dict[str, Any]:
    domain = get_domain(session, code)
    sourcing = domain_sourcing(session, domain, serp_cost_per_call)
    cost_by_month = _serp_cost_by_month(session, code)
    skips = dict(
        session.execute(
            select(SourceSkip.reason, func.count())
            .where(SourceSkip.domain == code)
            .group_by(SourceSkip.reason)
        ).all()
    )
    people = session.scalar(
        select(func.count()).where(Person.domain == code, Person.removed_at.is_(None))
    )
    images_by_source = dict(
        session.execute(
            select(Image.source, func.count())
            .where(Image.domain == code, Image.removed_at.is_(None))
            .group_by(Image.source)
        ).all()
    )
    rejections, accepted, people_with_faces = _face_figures(session, code)
    gallery = _production_gallery(session, code)
    return {
        "domain": code,
        "name": domain.display_name,
        "is_active": domain.is_active,
        "people": people,
        "people_without_accepted_face": (people or 0) - (people_with_faces or 0),
        "images_by_source": images_by_source,
        **sourcing,
        "serp_cost_by_month": cost_by_month,
        "serp_budget_per_month": domain.serp_budget,
        "serp_spent_this_month": round(serp_spent_in_month(session, code), 4),
        "source_skips_by_reason": dict(sorted(skips.items())),
        "faces_accepted": accepted,
        "rejections_by_reason": dict(sorted(rejections.items())),
        "production_gallery": gallery,
    }


def _source_skips(session: Session, code: str, names: dict[int, str]) -> list[dict[str, Any]]:
    """What the domain's sources left out, and why."""
    return [
        {
            "stage": "source",
            "person": names.get(skip.person_id),
            "item": skip.item,
            "reason": skip.reason,
            "detail": skip.detail,
        }
        for skip in session.scalars(
            select(SourceSkip).where(SourceSkip.domain == code).order_by(SourceSkip.id)
        )
    ]


def _face_gate_skips(session: Session, code: str, names: dict[int, str]) -> list[dict[str, Any]]:
    """Photos rejected at ingest or by face validation, in the current face configuration."""
    faces = session.execute(
        select(
            Image.person_id,
            Image.source_url,
            Face.status,
            Face.rejection_reason,
            Face.rejection_detail,
        )
        .join(Image, Image.id == Face.image_id)
        .where(Face.domain == code, Face.rejection_reason.is_not(None))
        .where(Image.removed_at.is_(None))
        .where(Face.detector_config == current_detector_config(session, code))
        .order_by(Face.id)
    ).all()
    return [
        # An accepted face with a reason was kept as its person's only face despite the gate.
        {
            "stage": "detected_faces",
            "person": names.get(row.person_id),
            "item": row.source_url,
            "reason": row.rejection_reason
            if row.status == "rejected"
            else f"kept_despite_{row.rejection_reason}",
            "detail": row.rejection_detail,
        }
        for row in faces
    ]


def _quarantined_faces(session: Session, code: str, names: dict[int, str]) -> list[dict[str, Any]]:
    """Faces the production gallery's identity check quarantined."""
    serving = serving_row(session, code)
    prod = serving.id if serving is not None else None
    quarantined = session.execute(
        select(
            Image.person_id,
            Image.source_url,
            GalleryFace.identity_reason,
            GalleryFace.centroid_distance,
        )
        .join(Face, Face.id == GalleryFace.face_id)
        .join(Image, Image.id == Face.image_id)
        .where(GalleryFace.gallery_id == prod, GalleryFace.identity_status != "accepted")
    ).all()
    return [
        {
            "stage": "gallery",
            "person": names.get(row.person_id),
            "item": row.source_url,
            "reason": row.identity_reason,
            "detail": f"distance {row.centroid_distance:.3f} from the person's other faces"
            if row.centroid_distance is not None
            else None,
        }
        for row in quarantined
    ]


def _processing_failures(
    session: Session, code: str, names: dict[int, str]
) -> list[dict[str, Any]]:
    """What the domain's stages could not process, still retried or given up."""
    return [
        # A photo a stage could not process: tried again on later runs up to MAX_ATTEMPTS.
        {
            "stage": failure.stage,
            "person": names.get(failure.person_id),
            "item": failure.item,
            "reason": "processing_failed"
            if failure.attempts < MAX_ATTEMPTS
            else "processing_given_up",
            "detail": f"{failure.error} (tried {failure.attempts} of {MAX_ATTEMPTS} times)",
            "attempts": failure.attempts,
        }
        for failure in session.scalars(
            select(ProcessingFailure)
            .where(ProcessingFailure.domain == code)
            .order_by(ProcessingFailure.id)
        )
    ]


def domain_skips(session: Session, code: str) -> list[dict[str, Any]]:
    """Everything left out of the domain's gallery and why: source skips, photos rejected at
    ingest or by face validation, faces quarantined by the production gallery's identity check."""
    get_domain(session, code)
    people = session.execute(select(Person.id, Person.full_name).where(Person.domain == code))
    names = {row.id: row.full_name for row in people}
    return (
        _source_skips(session, code, names)
        + _face_gate_skips(session, code, names)
        + _quarantined_faces(session, code, names)
        + _processing_failures(session, code, names)
    )
