"""What a domain's production gallery is missing: photos added to or removed from its source (a
folder), new accepted faces, people below their photo target. No Dagster here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.app.stats import domain_sourcing
from facerec_pipeline.core.gallery.publish import serving_row
from facerec_pipeline.db.exclusions import excluded_key_hashes, person_key_hash
from facerec_pipeline.db.models import Domain, Face, GalleryFace, Image
from facerec_pipeline.sources.interfaces import PhotoSource

INGEST = [
    "candidates",
    "raw_images",
    "detected_faces",
    "face_embeddings",
    "gallery",
    "production_gallery",
]
EMBED = ["face_embeddings", "gallery", "production_gallery"]
REDOWNLOAD = INGEST[1:]


@dataclass(frozen=True)
class RetrainRequest:
    domain: str
    kind: str  # "ingest" | "embed" | "redownload"
    assets: list[str]
    pending: int
    run_key: str
    reason: str


def _fingerprint(items: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:16]


def source_changes(session: Session, code: str, source: PhotoSource) -> list[str]:
    """Photos added to (+url) or removed from (-url) the source since it was last ingested,
    when the source can tell without a fetch (a folder); none otherwise. The photos of people
    erased from the domain are no change: no run takes them in."""
    photos = source.offered_photos()
    if photos is None:
        return []
    erased = excluded_key_hashes(session, code)
    offered = {url for url, key in photos.items() if person_key_hash(key) not in erased}
    known = set(
        session.scalars(
            select(Image.source_url).where(Image.domain == code, Image.removed_at.is_(None))
        )
    )
    return sorted(f"+{url}" for url in offered - known) + sorted(
        f"-{url}" for url in known - offered
    )


def new_accepted_faces(session: Session, code: str, gallery_id: int) -> list[int]:
    in_gallery = select(GalleryFace.face_id).where(GalleryFace.gallery_id == gallery_id)
    return list(
        session.scalars(
            select(Face.id)
            .join(Image, Image.id == Face.image_id)
            .where(
                Face.domain == code,
                Face.status == "accepted",
                Image.removed_at.is_(None),
                Face.id.not_in(in_gallery),
            )
        )
    )


def retrain_request(
    session: Session, domain: Domain, today: str, source: PhotoSource
) -> RetrainRequest | None:
    """The run a domain needs now, if any (`source`: the domain's, from
    SourcesResource.for_domain). Run keys name the pending work, so the same work is asked for
    once and new work always gets a new key."""
    prod = serving_row(session, domain.code)
    if prod is None:
        return None  # never built: the registry sensor asks for the first run
    threshold = max(1, domain.retrain_min_new_faces)
    prefix = f"retrain:{domain.code}:v{prod.version}"
    changes = source_changes(session, domain.code, source)
    if len(changes) >= threshold:
        key = f"{prefix}:files:{_fingerprint(changes)}"
        reason = f"{len(changes)} photos added or removed in the {source.name} source"
        return RetrainRequest(domain.code, "ingest", INGEST, len(changes), key, reason)
    faces = new_accepted_faces(session, domain.code, prod.id)
    if len(faces) >= threshold:
        key = f"{prefix}:faces:{_fingerprint([str(face) for face in faces])}"
        reason = f"{len(faces)} accepted faces are not in the gallery"
        return RetrainRequest(domain.code, "embed", EMBED, len(faces), key, reason)
    if source.refetches_below_target:
        below = domain_sourcing(session, domain)["people_below_target"]
        if below:
            key = f"redownload:{domain.code}:{today}"
            reason = f"{below} people below {domain.images_per_person} photos"
            return RetrainRequest(domain.code, "redownload", REDOWNLOAD, below, key, reason)
    return None
