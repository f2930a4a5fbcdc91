"""The routes a client app reads its domain by: `/v1/domains`, its stats, `/v1/people` and the
previews they name."""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Any

import blurhash
import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from PIL import Image
from sqlalchemy.orm import Session

from facerec_pipeline.app.clients import ClientView
from facerec_pipeline.core.artifacts.store import THUMBNAIL, WEB
from facerec_pipeline.core.gallery.previews import people_previews
from facerec_pipeline.core.gallery.publish import serving_row
from facerec_pipeline.core.recognition.recognizer import serving_pointer
from facerec_pipeline.db.models import Artifact
from facerec_pipeline.serving.access import (
    LOG,
    client_of,
    order_of,
    request_session,
    settings_of,
)
from facerec_pipeline.settings import Settings

# The people list: at most this many people an answer (`limit`), and the width of the blurhash
# placeholder it carries (a PNG data URI the page paints before the thumbnail arrives).
PEOPLE_LIMIT, PEOPLE_LIMIT_MAX = 200, 1000
PLACEHOLDER_WIDTH = 32
PREVIEW_STAGES = (THUMBNAIL, WEB)
PREVIEW_CACHE = "private, max-age=86400"
router = APIRouter()


@lru_cache(maxsize=4096)
def placeholder(hash_: str, width: int, height: int) -> str | None:
    """The blurhash painted as a small PNG data URI, PLACEHOLDER_WIDTH wide with the preview's
    aspect kept (None for a hash that does not decode)."""
    if width <= 0 or height <= 0:
        return None
    rows = max(1, min(4 * PLACEHOLDER_WIDTH, round(PLACEHOLDER_WIDTH * height / width)))
    try:
        pixels = blurhash.decode(hash_, PLACEHOLDER_WIDTH, rows)
    except (ValueError, IndexError, KeyError):
        return None
    image = Image.fromarray(np.clip(np.asarray(pixels), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _person(domain: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One person of the people list as a client reads it: the preview by URL, never by its
    path under the storage root."""
    thumbnail = entry["thumbnail"] or {}
    width, height, hash_ = (
        thumbnail.get("width"),
        thumbnail.get("height"),
        thumbnail.get("blurhash"),
    )
    return {
        "domain": domain,
        "name": entry["name"],
        "faces": entry["faces"],
        "thumbnail_url": f"/v1/previews/{thumbnail['artifact_id']}" if thumbnail else None,
        "width": width,
        "height": height,
        "blurhash": hash_,
        "placeholder": placeholder(hash_, width, height) if hash_ and width and height else None,
    }


@router.get("/v1/domains", tags=["domains"])
def domains(
    client: ClientView = Depends(client_of),
    settings: Settings = Depends(settings_of),
    session: Session = Depends(request_session),
) -> dict[str, Any]:
    """The token's domain and where recognition looks: the domain, then those it inherits,
    each with the gallery version that serves it (null: none yet)."""
    order = order_of(client, session, settings)
    searched = []
    for code in order:
        pointer = serving_pointer(settings, code, session)
        searched.append(
            {
                "domain": code,
                "gallery_version": int(pointer["version"]) if pointer else None,
                "operating_point": pointer.get("operating_point") if pointer else None,
            }
        )
    return {"client": client.name, "domain": client.domain, "search_order": searched}


@router.get(
    "/v1/domains/{code}/stats",
    tags=["domains"],
    responses={403: {"description": "Another domain than the token's"}},
)
def stats(
    code: str,
    request: Request,
    client: ClientView = Depends(client_of),
    session: Session = Depends(request_session),
) -> dict[str, Any]:
    """What `facerec stats --domain CODE --json` shows, for the token's own domain only."""
    from facerec_pipeline.app.stats import domain_stats

    if code != client.domain:
        raise HTTPException(403, detail=f"this token is for domain {client.domain!r} only")
    return domain_stats(session, code, settings_of(request).web.serp_cost_per_call)


@router.get(
    "/v1/people",
    tags=["domains"],
    responses={409: {"description": "The token's domain was removed"}},
)
def people(
    client: ClientView = Depends(client_of),
    settings: Settings = Depends(settings_of),
    session: Session = Depends(request_session),
    limit: int = Query(PEOPLE_LIMIT, ge=1, le=PEOPLE_LIMIT_MAX),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Who recognition can name: the people of the serving version of each domain of the
    search order (by domain, then name), each with the URL of their face's 400 px thumbnail
    (null until `facerec run` made it), its size, its blurhash and `placeholder`, the
    blurhash as a PNG data URI to paint before the thumbnail arrives. `limit` people from
    `offset` of `total`."""
    order = order_of(client, session, settings)
    galleries, everyone = [], []
    for code in order:
        row = serving_row(session, code)
        if row is None:
            continue
        galleries.append({"domain": code, "version": row.version})
        everyone += [(code, entry) for entry in people_previews(session, row.id)]
    return {
        "domain": client.domain,
        "search_order": order,
        "galleries": galleries,
        "total": len(everyone),
        "offset": offset,
        "limit": limit,
        "people": [_person(code, entry) for code, entry in everyone[offset : offset + limit]],
    }


@router.get(
    "/v1/previews/{artifact_id}",
    tags=["domains"],
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The preview (JPEG)"},
        404: {"description": "No such preview for this token, or its file is missing"},
    },
)
def preview(
    artifact_id: int,
    client: ClientView = Depends(client_of),
    settings: Settings = Depends(settings_of),
    session: Session = Depends(request_session),
) -> Response:
    """A 400 px thumbnail or 800 px web copy of a face or photo of the search order's
    domains, by the id a `thumbnail_url` of /v1/people names."""
    order = order_of(client, session, settings)
    # An id no database integer holds (SQLite and PostgreSQL: 64 bits) is no row.
    in_range = 0 < artifact_id < 2**63
    artifact = session.get(Artifact, artifact_id) if in_range else None
    stored = (
        artifact.path
        if artifact is not None and artifact.stage in PREVIEW_STAGES and artifact.domain in order
        else None
    )
    session.commit()
    if stored is None:  # another domain's preview reads as no preview at all
        raise HTTPException(404, detail=f"no preview {artifact_id} for this token")
    try:
        data = settings.absolute(stored).read_bytes()
    except OSError as error:
        LOG.error(f"/v1/previews/{artifact_id}: {error}")
        raise HTTPException(
            404,
            detail=f"preview {artifact_id} is recorded but its file is missing: an "
            "administrator runs `facerec artifacts verify` (then `facerec run`) to make it "
            "again",
        ) from error
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": PREVIEW_CACHE, "X-Content-Type-Options": "nosniff"},
    )
