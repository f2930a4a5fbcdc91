"""The route that names faces: `POST /v1/recognize` (multipart or raw image bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from facerec_pipeline.app.clients import ClientView
from facerec_pipeline.app.domains import DomainError
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.gallery.loading import GalleryDamaged
from facerec_pipeline.core.images.image_files import ImageRejected
from facerec_pipeline.core.recognition.recognizer import NoGallery, Recognizer
from facerec_pipeline.serving.access import (
    client_of,
    order_of,
    pool_of,
    public,
    request_session,
    settings_of,
)
from facerec_pipeline.serving.pool import RecognizerPool
from facerec_pipeline.settings import Settings

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
RAW_TYPES = ("image/", "application/octet-stream")
router = APIRouter()


@router.post(
    "/v1/recognize",
    tags=["recognition"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={
        401: {"description": "Missing, unknown or revoked token"},
        409: {"description": "The domain has no production gallery yet"},
        413: {"description": "Over the upload byte limit or the reader's pixel limit"},
        415: {"description": "Neither multipart/form-data nor an image content type"},
        422: {"description": "Not a readable image, or no `file` field"},
        503: {"description": "The gallery or the face engine cannot be loaded"},
    },
)
async def recognize(
    request: Request,
    client: ClientView = Depends(client_of),
    settings: Settings = Depends(settings_of),
    pool: RecognizerPool = Depends(pool_of),
    session: Session = Depends(request_session),
) -> Any:
    """Name the faces in one photo (multipart field `file`, or the raw bytes with an image
    Content-Type) from the token's domain, then the domains it inherits: the answer of
    `facerec recognize --json` for it, with the gallery versions and operating points that
    answered."""
    data, filename = await _read_upload(request, request.app.state.max_upload_bytes)
    return await run_in_threadpool(_recognize, pool, settings, session, client, data, filename)


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    if not multipart and not content_type.startswith(RAW_TYPES):
        raise HTTPException(
            415,
            detail=f"send the photo as multipart/form-data (field `file`) or as raw bytes with "
            f"an image/* or application/octet-stream Content-Type, not {content_type or 'none'}",
        )
    body_limit = limit + (MULTIPART_OVERHEAD if multipart else 0)
    too_large = HTTPException(413, detail=f"the upload is over the {limit} byte limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > body_limit:
            raise too_large
        chunks.append(chunk)
    body, filename = b"".join(chunks), None
    if multipart:

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
        except Exception as error:  # starlette's MultiPartException, a malformed body
            raise HTTPException(422, detail=f"malformed multipart body: {error}") from error
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, detail="the multipart body has no `file` field with a photo")
        body, filename = await upload.read(), upload.filename
        await form.close()
        if len(body) > limit:
            raise too_large
    if not body:
        raise HTTPException(422, detail="the upload is empty: send a photo")
    return body, filename


def _public_name(filename: str | None) -> str | None:
    """The uploaded file's own name (no folders), never a path on this server."""
    name = Path((filename or "").replace("\\", "/")).name
    return name or None


def _recognize(
    pool: RecognizerPool,
    settings: Settings,
    session: Session,
    client: ClientView,
    data: bytes,
    filename: str | None,
) -> dict[str, Any]:
    """Runs in a worker thread: the upload is decoded from its bytes by the one image reader
    (its byte and pixel limits), never written to a file. The request's one session reads
    the search order and what serves each domain."""
    order = order_of(client, session, settings)  # 409: the token's domain was removed since
    name = _public_name(filename) or "the upload"

    def answer(recognizer: Recognizer) -> dict[str, Any]:
        result = recognizer.recognize_image(data, name, session)
        result["galleries"] = [
            {
                "domain": gallery.domain,
                "version": gallery.version,
                "operating_point": gallery.operating_point.to_dict()
                if gallery.operating_point
                else None,
            }
            for gallery in recognizer.galleries
        ]
        if recognizer.skipped:
            result["skipped"] = list(recognizer.skipped)
        return result

    try:
        result = pool.use(order, answer, session)
    except ImageRejected as rejected:
        status = 413 if rejected.reason == "image_too_large" else 422
        raise HTTPException(status, detail=public(str(rejected), settings)) from rejected
    except (NoGallery, DomainError) as missing:
        raise HTTPException(409, detail=public(str(missing), settings)) from missing
    except (GalleryDamaged, ModelWeightsMissing, ValueError) as broken:
        raise HTTPException(503, detail=public(str(broken), settings)) from broken
    return {
        "image": _public_name(filename),
        "domain": client.domain,
        "search_order": order,
        **{key: value for key, value in result.items() if key != "image"},
    }
