"""Who a gallery version serves, each person with the preview of their first face: the 400 px
thumbnail's artifact (path, size, blurhash). What the gallery asset's metadata and the serving
page's people list show."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.core.artifacts.store import THUMBNAIL, canonical_parameters
from facerec_pipeline.core.images.previews import THUMBNAIL_SIDE, parameters
from facerec_pipeline.db.models import Artifact, Face, GalleryFace, Person


def thumbnail_key(image_sha256: str, box: tuple[int, int, int, int]) -> tuple[str, str]:
    """How the thumbnail of the face `box` of a photo is found: (photo sha256, parameters)."""
    return image_sha256, canonical_parameters(parameters(THUMBNAIL_SIDE, box))


def thumbnails_of(
    session: Session, domain: str, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], Artifact]:
    """The thumbnail artifacts of `keys` (thumbnail_key) that exist."""
    shas = sorted({sha for sha, _ in keys})
    wanted = set(keys)
    found: dict[tuple[str, str], Artifact] = {}
    for start in range(0, len(shas), 400):
        for artifact in session.scalars(
            select(Artifact).where(
                Artifact.domain == domain,
                Artifact.stage == THUMBNAIL,
                Artifact.image_sha256.in_(shas[start : start + 400]),
            )
        ):
            key = (artifact.image_sha256, artifact.parameters)
            if key in wanted:
                found[key] = artifact
    return found


def people_previews(session: Session, gallery_id: int) -> list[dict[str, Any]]:
    """One entry per person of the version (by name): faces served, and `thumbnail` (None when
    the previews stage has not made it, or could not)."""
    rows = session.execute(
        select(
            Person.id,
            Person.full_name,
            Person.domain,
            Face.image_sha256,
            Face.box_x,
            Face.box_y,
            Face.box_w,
            Face.box_h,
        )
        .join(GalleryFace, GalleryFace.person_id == Person.id)
        .join(Face, Face.id == GalleryFace.face_id)
        .where(GalleryFace.gallery_id == gallery_id, GalleryFace.identity_status == "accepted")
        .order_by(Person.full_name, Face.id)
    ).all()
    people: dict[int, dict[str, Any]] = {}
    wanted: dict[int, tuple[str, str]] = {}
    for row in rows:
        entry = people.setdefault(
            row.id, {"person_id": row.id, "name": row.full_name, "faces": 0, "thumbnail": None}
        )
        entry["faces"] += 1
        if row.id not in wanted and row.box_x is not None:
            box = (int(row.box_x), int(row.box_y), int(row.box_w), int(row.box_h))
            wanted[row.id] = thumbnail_key(row.image_sha256, box)
    if not people:
        return []
    found = thumbnails_of(session, rows[0].domain, list(wanted.values()))
    for person_id, key in wanted.items():
        artifact = found.get(key)
        if artifact is not None:
            people[person_id]["thumbnail"] = {
                "artifact_id": artifact.id,
                "path": artifact.path,
                "width": artifact.width,
                "height": artifact.height,
                "blurhash": artifact.blurhash,
            }
    return list(people.values())
