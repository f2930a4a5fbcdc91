"""Which gallery version serves production: promotion after the checks pass, rollback to an
earlier published version (which pins it), the pointer files kept in step with the database, and
the version list. No Dagster here.

The database is the one truth of what serves: the row whose `status` is `production` (at most
one per domain, a unique index says so). The pointer file recognized_faces_prod/{domain}/
gallery.json is derived from that row by `pointer_of` for whoever reads files; the recognizer
reads the row. `reconcile_prod_pointers` rewrites every pointer from the rows after a restore."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from facerec_pipeline.app import promotion_checks as checks
from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.face_models import model_name_of, model_of_config
from facerec_pipeline.core.gallery.loading import GalleryDamaged, load_batches
from facerec_pipeline.core.gallery.publish import (
    POINTER_FILE,
    PUBLISHED,
    SERVED,
    move_aside,
    pointer_of,
    read_prod_pointer,
    serving_row,
    write_prod_pointer,
)
from facerec_pipeline.db.models import PRODUCTION, Domain, Gallery, GalleryFace, Person
from facerec_pipeline.settings import Settings


class GalleryError(ValueError):
    pass


def latest_version(session: Session, domain: str) -> Gallery | None:
    return session.scalar(
        select(Gallery).where(Gallery.domain == domain).order_by(Gallery.version.desc()).limit(1)
    )


def promote(session: Session, settings: Settings, gallery: Gallery) -> None:
    """Make `gallery` the one production serves: the pointer file and the database agree. A
    version built before open-set calibration cannot serve (the recognizer would refuse it), nor
    can one whose files are missing or altered."""
    if not gallery.operating_point:
        raise GalleryError(
            f"gallery v{gallery.version} of {gallery.domain!r} was built before open-set "
            "recognition (no calibrated operating point, another model configuration) and "
            f"cannot serve; `facerec run --domain {gallery.domain}` builds a version that can"
        )
    load_batches(
        settings.storage_dir,
        gallery.domain,
        gallery.version,
        gallery.model_config,
        gallery.batch_paths,
        checksums=gallery.file_checksums,
    )
    now = datetime.now(UTC)
    session.execute(
        update(Gallery)
        .where(Gallery.domain == gallery.domain, Gallery.status == PRODUCTION)
        .values(status=PUBLISHED)
    )
    session.flush()  # the unique index allows one production row per domain at any moment
    gallery.status = PRODUCTION
    gallery.published_at = gallery.published_at or now
    people = select(GalleryFace.person_id).where(
        GalleryFace.gallery_id == gallery.id, GalleryFace.identity_status == "accepted"
    )
    session.execute(update(Person).where(Person.id.in_(people)).values(status="deployed"))
    session.flush()
    write_prod_pointer(
        session, ArtifactStore(settings), settings.prod_dir(gallery.domain), pointer_of(gallery)
    )


def reconcile_prod_pointers(
    session: Session, settings: Settings, only: str | None = None
) -> list[str]:
    """Rewrite production pointers from the database (after a restore, or when one was lost or
    edited): a domain's pointer names the version its rows say serves, or is moved aside when
    none serves or the domain is unknown. `only`: that domain alone. Returns one line per
    pointer changed."""
    changes = []
    known = set()
    domains = select(Domain).order_by(Domain.code)
    for domain in session.scalars(domains.where(Domain.code == only) if only else domains):
        known.add(domain.code)
        prod_dir = settings.prod_dir(domain.code)
        try:
            pointer = read_prod_pointer(prod_dir)
        except GalleryDamaged:
            pointer = {"version": "damaged"}
        serving = serving_row(session, domain.code)
        if serving is None:
            if pointer is not None:
                moved = move_aside(prod_dir / POINTER_FILE)
                changes.append(
                    f"{domain.code}: no version serves in the database; the pointer "
                    f"to v{pointer['version']} was moved to {moved}"
                )
        elif pointer is None or pointer != pointer_of(serving):
            write_prod_pointer(session, ArtifactStore(settings), prod_dir, pointer_of(serving))
            was = f"v{pointer['version']}" if pointer else "nothing"
            changes.append(f"{domain.code}: serves v{serving.version} (the pointer named {was})")
    prod_root = settings.storage_dir / "recognized_faces_prod"
    for pointer_file in [] if only else sorted(prod_root.glob(f"*/{POINTER_FILE}")):
        if pointer_file.parent.name not in known:
            moved = move_aside(pointer_file)
            changes.append(
                f"{pointer_file.parent.name}: not in the database; its pointer was moved to {moved}"
            )
    return changes


def pin_holds(session: Session, domain: Domain, candidate: Gallery) -> bool:
    """A rollback pinned the domain to a version and `candidate` brings no new content:
    it was built before the pin (the version rolled back from, or older), or after it from the
    very faces of a version built before it (a recalibration: a new target FAR, a new decision
    rule after an upgrade). Production then keeps the pinned version."""
    if domain.pinned_version is None or candidate.version == domain.pinned_version:
        return False
    pinned_at = domain.pinned_at
    created = candidate.created_at
    if pinned_at is None or created is None or _aware(created) <= _aware(pinned_at):
        return True
    earlier = session.scalars(
        select(Gallery.id).where(
            Gallery.domain == domain.code,
            Gallery.id != candidate.id,
            Gallery.created_at <= pinned_at,
        )
    ).all()
    faces = _accepted_faces(session, candidate.id)
    return any(_accepted_faces(session, gallery_id) == faces for gallery_id in earlier)


def _accepted_faces(session: Session, gallery_id: int) -> frozenset[int]:
    return frozenset(
        session.scalars(
            select(GalleryFace.face_id).where(
                GalleryFace.gallery_id == gallery_id, GalleryFace.identity_status == "accepted"
            )
        )
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pin_message(domain: Domain) -> str:
    return (
        f"domain {domain.code!r} is pinned to v{domain.pinned_version} by a rollback; "
        f"`facerec gallery unpin --domain {domain.code}` lets newer versions serve"
    )


@dataclass(frozen=True)
class Publication:
    """What publishing a version whose checks passed did."""

    serving: int  # the version that serves now
    published: bool  # the candidate became production now
    pinned: str | None  # why it does not serve (a rollback's pin), or None
    pointer_changes: list[str]  # the production pointer, put right from the database


def publish_passed(session: Session, settings: Settings, candidate: Gallery) -> Publication:
    """`candidate` (every check passed) serves, unless a rollback's pin holds; a version built
    from new content ends the pin; the domain's production pointer is then reconciled with the
    database. The one publishing step of the `production_gallery` asset and of `facerec gallery
    recheck`."""
    domain = get_domain(session, candidate.domain)
    current = serving_row(session, candidate.domain)
    pinned = pin_holds(session, domain, candidate)
    published = not candidate.is_prod and not pinned
    if published:
        promote(session, settings, candidate)
        domain.pinned_version = domain.pinned_at = None  # new faces end a rollback's pin
    changes = reconcile_prod_pointers(session, settings, only=candidate.domain)
    return Publication(
        serving=current.version if pinned and current else candidate.version,
        published=published,
        pinned=pin_message(domain) if pinned else None,
        pointer_changes=changes,
    )


def unpin(session: Session, domain_code: str) -> int | None:
    """Clear a rollback's pin; returns the version that was pinned."""
    domain = get_domain(session, domain_code)
    pinned = domain.pinned_version
    domain.pinned_version = None
    domain.pinned_at = None
    return pinned


CHECK_DESCRIPTIONS = {
    "coherent_model": "Every embedding of the version comes from one face configuration.",
    "no_photo_in_two_people": "No photo gives a face to two different people.",
    "min_faces_per_person": "Every person has at least the domain's min_faces_per_person faces.",
    "distinct_identities": "No two people's mean faces are so close they look like one person "
    "(a person split under two names, a folder filled with someone else's photos).",
    "loo_accuracy": "Leave-one-out: each face's nearest other face is of its own person at least "
    "min_loo_accuracy of the time.",
    "not_shrunk": "The version has not lost more than max_gallery_shrink of the serving "
    "version's faces.",
    "no_person_lost": "Everyone the serving version holds, and whom the domain still lists, is "
    "in this version.",
    "no_quality_drop": "The expected DIR and rank-1 are not more than max_quality_drop below the "
    "serving version's (DIR only at the same target FAR and rule).",
}
CHECK_NAMES = list(CHECK_DESCRIPTIONS)


def run_checks(session: Session, settings: Settings, domain: str) -> tuple[Gallery, dict]:
    """Run the blocking checks on the newest version of `domain` with the domain's current
    settings (and the distances of the face model that built the version); store them on the
    version and set its status (candidate when all pass, rejected otherwise; a published
    version keeps its status). Returns (version, {check: (passed, figures)})."""
    settings_row = get_domain(session, domain)
    candidate = latest_version(session, domain)
    if candidate is None:
        raise GalleryError(f"domain {domain!r} has no gallery version to check")
    current = serving_row(session, domain)
    other = current is not None and current.id != candidate.id
    previous_people: set[str] = set()
    if other:
        previous_people = set(
            session.scalars(
                select(Person.normalized_name)
                .join(GalleryFace, GalleryFace.person_id == Person.id)
                .where(
                    GalleryFace.gallery_id == current.id, GalleryFace.identity_status == "accepted"
                )
            )
        )
    still_present = set(
        session.scalars(
            select(Person.normalized_name).where(
                Person.domain == domain, Person.removed_at.is_(None)
            )
        )
    )
    loaded = load_batches(
        settings.storage_dir,
        domain,
        candidate.version,
        candidate.model_config,
        candidate.batch_paths,
        with_faces=True,
        checksums=candidate.file_checksums,
    )
    outcomes = {
        "coherent_model": checks.coherent_model(loaded),
        "no_photo_in_two_people": checks.no_photo_in_two_people(loaded),
        "min_faces_per_person": checks.faces_per_person(loaded, settings_row.min_faces_per_person),
        "distinct_identities": checks.distinct_identities(
            loaded, model_of_config(candidate.model_config).distinct_min_distance
        ),
        "loo_accuracy": checks.leave_one_out_accuracy(loaded, settings_row.min_loo_accuracy),
        "not_shrunk": checks.not_shrunk(
            candidate.face_count,
            current.face_count if other else None,
            settings_row.max_gallery_shrink,
        ),
        "no_person_lost": checks.no_person_lost(loaded, previous_people, still_present),
        "no_quality_drop": checks.no_quality_drop(
            candidate.operating_point,
            current.operating_point if other else None,
            settings_row.max_quality_drop,
        ),
    }
    candidate.checks = {
        name: {"passed": bool(passed), **figures} for name, (passed, figures) in outcomes.items()
    }
    if candidate.status not in SERVED:
        candidate.status = "candidate" if all(p for p, _ in outcomes.values()) else "rejected"
    session.flush()
    return candidate, outcomes


def failed_checks_message(gallery: Gallery) -> str:
    """Each failed check with its figures, for an operator to act on."""
    results = gallery.checks or {}
    missing = sorted(set(CHECK_NAMES) - set(results))
    lines = [
        f"{name}: {figures_text(result)}"
        for name, result in sorted(results.items())
        if not result.get("passed")
    ]
    if missing:
        lines.append(
            f"not run yet: {', '.join(missing)} (run `facerec gallery recheck --domain "
            f"{gallery.domain}`)"
        )
    return "; ".join(lines)


def figures_text(figures: dict) -> str:
    """A check's figures as `name=value, ...` (empty ones and the verdict left out)."""
    shown = {k: v for k, v in figures.items() if k != "passed" and v not in (None, [], {})}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def rollback(session: Session, settings: Settings, domain: str, to: int | None) -> Gallery:
    """Serve an earlier published version: `to`, or the newest one older than production (whose
    files must be intact). It stays pinned until `unpin` or a version built from new content."""
    domain_row = get_domain(session, domain)
    current = serving_row(session, domain)
    published = session.scalars(
        select(Gallery)
        .where(Gallery.domain == domain, Gallery.status.in_(SERVED))
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
    promote(session, settings, target)  # refuses a version whose files are damaged
    domain_row.pinned_version = target.version
    domain_row.pinned_at = datetime.now(UTC)
    return target


def list_versions(session: Session, domain: str) -> list[dict[str, Any]]:
    pinned = get_domain(session, domain).pinned_version
    galleries = session.scalars(
        select(Gallery).where(Gallery.domain == domain).order_by(Gallery.version)
    )
    return [
        {
            "version": g.version,
            "status": g.status,
            "is_prod": g.is_prod,
            "pinned": g.version == pinned,
            "people": g.person_count,
            "faces": g.face_count,
            "quarantined": g.quarantined_count,
            "face_model": model_name_of(g.model_config),
            "model_config": g.model_config,
            "loo_top1_accuracy": (g.evaluation or {}).get("loo_top1_accuracy"),
            "operating_point": g.operating_point,
            "failed_checks": sorted(k for k, v in (g.checks or {}).items() if not v["passed"]),
            "created_at": g.created_at.isoformat() if g.created_at else None,
            "published_at": g.published_at.isoformat() if g.published_at else None,
        }
        for g in galleries
    ]
