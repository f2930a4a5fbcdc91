"""Figures about a domain's data, read from the database. No Dagster here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import Face, Gallery, GalleryFace, Image, Person
from facerec_pipeline.domains.registry import get_domain


def domain_stats(session: Session, code: str) -> dict[str, Any]:
    domain = get_domain(session, code)
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
    present_faces = (
        select(Face.status, Face.rejection_reason, Face.person_id)
        .join(Image, Image.id == Face.image_id)
        .where(Face.domain == code, Image.removed_at.is_(None))
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
    prod = session.scalar(select(Gallery).where(Gallery.domain == code, Gallery.is_prod))
    gallery: dict[str, Any] | None = None
    if prod is not None:
        quarantined = dict(
            session.execute(
                select(GalleryFace.identity_reason, func.count())
                .where(GalleryFace.gallery_id == prod.id, GalleryFace.identity_status != "accepted")
                .group_by(GalleryFace.identity_reason)
            ).all()
        )
        gallery = {
            "version": prod.version,
            "people": prod.person_count,
            "faces": prod.face_count,
            "quarantined": quarantined,
            "model_config": prod.model_config,
            "published_at": prod.published_at.isoformat() if prod.published_at else None,
            "batches": prod.batch_paths,
            "evaluation": prod.evaluation,
        }
    return {
        "domain": code,
        "name": domain.display_name,
        "is_active": domain.is_active,
        "people": people,
        "people_without_accepted_face": (people or 0) - (people_with_faces or 0),
        "images_by_source": images_by_source,
        "faces_accepted": accepted,
        "rejections_by_reason": dict(sorted(rejections.items())),
        "production_gallery": gallery,
    }
