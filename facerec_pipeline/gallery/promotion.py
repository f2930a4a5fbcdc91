"""Which gallery version serves production: promotion after the checks pass, rollback to an
earlier published version, and the version list. No Dagster here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import Gallery, GalleryFace, Person
from facerec_pipeline.domains.registry import get_domain
from facerec_pipeline.gallery.publish import write_prod_pointer
from facerec_pipeline.settings import Settings


class GalleryError(ValueError):
    pass


def latest_version(session: Session, domain: str) -> Gallery | None:
    return session.scalar(
        select(Gallery).where(Gallery.domain == domain).order_by(Gallery.version.desc()).limit(1)
    )


def prod_version(session: Session, domain: str) -> Gallery | None:
    return session.scalar(select(Gallery).where(Gallery.domain == domain, Gallery.is_prod))


def promote(session: Session, settings: Settings, gallery: Gallery) -> None:
    """Make `gallery` the one production serves: the pointer file and the database agree."""
    now = datetime.now(UTC)
    session.execute(update(Gallery).where(Gallery.domain == gallery.domain).values(is_prod=False))
    gallery.is_prod = True
    gallery.status = "published"
    gallery.published_at = gallery.published_at or now
    people = select(GalleryFace.person_id).where(
        GalleryFace.gallery_id == gallery.id, GalleryFace.identity_status == "accepted"
    )
    session.execute(update(Person).where(Person.id.in_(people)).values(status="deployed"))
    session.flush()
    write_prod_pointer(
        settings.prod_dir(gallery.domain),
        {
            "domain": gallery.domain,
            "version": gallery.version,
            "model_config": gallery.model_config,
            "dim": gallery.dim,
            "batches": gallery.batch_paths,
            "published_at": now.isoformat(),
        },
    )


def rollback(session: Session, settings: Settings, domain: str, to: int | None) -> Gallery:
    """Serve an earlier published version: `to`, or the newest one older than production."""
    get_domain(session, domain)
    current = prod_version(session, domain)
    published = session.scalars(
        select(Gallery)
        .where(Gallery.domain == domain, Gallery.status == "published")
        .order_by(Gallery.version.desc())
    ).all()
    if to is None:
        older = [g for g in published if current is None or g.version < current.version]
        if not older:
            raise GalleryError(
                f"domain {domain!r} has no earlier published gallery to roll back to"
            )
        target = older[0]
    else:
        target = next((g for g in published if g.version == to), None)
        if target is None:
            versions = ", ".join(str(g.version) for g in published) or "none"
            raise GalleryError(
                f"version {to} of {domain!r} was never published (published versions: {versions})"
            )
    promote(session, settings, target)
    return target


def list_versions(session: Session, domain: str) -> list[dict[str, Any]]:
    get_domain(session, domain)
    galleries = session.scalars(
        select(Gallery).where(Gallery.domain == domain).order_by(Gallery.version)
    )
    return [
        {
            "version": g.version,
            "status": g.status,
            "is_prod": g.is_prod,
            "people": g.person_count,
            "faces": g.face_count,
            "quarantined": g.quarantined_count,
            "loo_top1_accuracy": (g.evaluation or {}).get("loo_top1_accuracy"),
            "failed_checks": sorted(k for k, v in (g.checks or {}).items() if not v["passed"]),
            "created_at": g.created_at.isoformat() if g.created_at else None,
            "published_at": g.published_at.isoformat() if g.published_at else None,
        }
        for g in galleries
    ]
