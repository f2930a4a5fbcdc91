"""`facerec serve`'s HTTP service for client apps: a client's bearer token (clients.py) names
its domain, and the domain only; recognition searches that domain's production gallery, then
those of the domains it inherits, exactly as `facerec recognize` does. The face engine and the
galleries stay loaded (one Recognizer per search order), each request first asks the database
which version serves (Recognizer.refresh), so a published version or a rollback answers without
a restart. No Dagster here beyond the face engine configuration (resources.py)."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import io
import logging
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import blurhash
import numpy as np
import sqlalchemy.exc
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from starlette.datastructures import UploadFile

from facerec_pipeline.core.artifacts.store import THUMBNAIL, WEB
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.gallery.previews import people_previews
from facerec_pipeline.core.gallery.publish import GalleryDamaged, serving_row
from facerec_pipeline.core.images.image_files import ImageRejected
from facerec_pipeline.core.recognition.recognizer import NoGallery, Recognizer, serving_pointer
from facerec_pipeline.db.engine import DatabaseUnavailable, session_scope
from facerec_pipeline.db.models import Artifact
from facerec_pipeline.domains.registry import DomainError, list_domains, search_order
from facerec_pipeline.serving.clients import ClientView, authenticate
from facerec_pipeline.settings import Settings

LOG = logging.getLogger("facerec.serve")
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
RAW_TYPES = ("image/", "application/octet-stream")
# Why a search order cannot serve: the message says what to do (`facerec run --domain X`, ...).
CANNOT_SERVE = (NoGallery, GalleryDamaged, DomainError, ModelWeightsMissing, ValueError)
# The people list: at most this many people an answer (`limit`), and the width of the blurhash
# placeholder it carries (a PNG data URI the page paints before the thumbnail arrives).
PEOPLE_LIMIT, PEOPLE_LIMIT_MAX = 200, 1000
PLACEHOLDER_WIDTH = 32
PREVIEW_STAGES = (THUMBNAIL, WEB)
PREVIEW_CACHE = "private, max-age=86400"
# The database cannot be reached (PostgreSQL stopped, a network cut, SQLite's file locked or
# damaged): every endpoint answers 503 with Retry-After, and the log has one line per request.
DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    DatabaseUnavailable,
)
RETRY_AFTER_S = 30
T = TypeVar("T")


@dataclass
class _Slot:
    """One search order's recognizer and the lock that serializes its use (the face engine and
    the gallery reloads are not thread-safe)."""

    order: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)
    recognizer: Recognizer | None = None


class RecognizerPool:
    """Recognizers by search order, built at first use (or at warm-up) and kept."""

    def __init__(self, settings: Settings, top_k: int):
        self.settings = settings
        self.top_k = top_k
        self._slots: dict[tuple[str, ...], _Slot] = {}
        self._guard = threading.Lock()
        self.failures: dict[str, str] = {}  # domain -> why its recognizer could not be built
        self._warming: threading.Thread | None = None

    def use(self, order: list[str], work: Callable[[Recognizer], T]) -> T:
        """`work(recognizer)` under the search order's lock, the recognizer built first when
        missing or when an inherited domain it could not search has got a gallery since."""
        key = tuple(order)
        with self._guard:
            slot = self._slots.setdefault(key, _Slot(key))
        with slot.lock:
            if slot.recognizer is None or self._gained_a_gallery(slot.recognizer, key):
                slot.recognizer = self._build(list(key))
            return work(slot.recognizer)

    def _build(self, order: list[str]) -> Recognizer:
        try:
            recognizer = Recognizer.for_domains(self.settings, order, top_k=self.top_k)
        except CANNOT_SERVE as error:
            self.failures[order[0]] = str(error)
            raise
        self.failures.pop(order[0], None)
        return recognizer

    def _gained_a_gallery(self, recognizer: Recognizer, order: tuple[str, ...]) -> bool:
        searched = {gallery.domain for gallery in recognizer.galleries}
        return any(
            serving_pointer(self.settings, code) is not None
            for code in order
            if code not in searched
        )

    def loaded(self) -> dict[str, Recognizer]:
        """The recognizer of each domain whose own search order is loaded."""
        with self._guard:
            slots = list(self._slots.values())
        return {slot.order[0]: slot.recognizer for slot in slots if slot.recognizer is not None}

    def serving_domains(self) -> dict[str, list[str]]:
        """Every domain with a production gallery, with its search order."""
        with session_scope(self.settings.database_url) as session:
            return {
                domain.code: search_order(session, domain.code)
                for domain in list_domains(session)
                if serving_row(session, domain.code) is not None
            }

    def warm(self) -> None:
        """Load the recognizer of every domain with a production gallery and run each of its
        face engines once (their models load at first use)."""
        for order in self.serving_domains().values():
            try:
                self.use(order, lambda recognizer: [e.warm() for e in recognizer.engines.values()])
            except CANNOT_SERVE:
                continue  # recorded in failures, reported by /readyz

    def warm_in_background(self) -> None:
        """Start warm() in a thread unless it is running."""
        with self._guard:
            if self._warming is not None and self._warming.is_alive():
                return
            self._warming = threading.Thread(target=self.warm, name="facerec-warm", daemon=True)
            self._warming.start()

    @property
    def warming(self) -> bool:
        return self._warming is not None and self._warming.is_alive()


@cache
def _page() -> tuple[str, dict[str, str]]:
    """The page at `/` (page.html: inline CSS and JS, nothing fetched from elsewhere) and its
    headers: a Content-Security-Policy that lets it run its own script (by hash) and talk to
    this server only."""
    html = resources.files("facerec_pipeline.serving").joinpath("page.html").read_text("utf-8")
    digests = (
        base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        for script in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    )
    scripts = " ".join(f"'sha256-{digest}'" for digest in digests)
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


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


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _public_name(filename: str | None) -> str | None:
    """The uploaded file's own name (no folders), never a path on this server."""
    name = Path((filename or "").replace("\\", "/")).name
    return name or None


DOCS_ASSETS = "/docs-assets"


def add_api_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts and styles served by this server, from
    the files the `fastapi-offline` package installs, as FastAPI documents for self-hosting
    (how-to/custom-docs-ui-assets): an offline deployment gets working pages, not blank ones
    waiting on a CDN."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def give_freed_memory_back() -> bool:
    """Make glibc's allocator give large freed blocks back to the system: each allocation of 1
    MiB or more (a decoded photo, its arrays) gets its own mapping, unmapped when freed, and
    threads share at most 2 arenas. By default the threshold grows with the largest block
    freed, so after a few large photos their memory was kept in the heap for good (RSS 221 ->
    778 MiB over mixed uploads; BENCHMARKS.md, server memory). False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold, m_arena_max = -3, -8  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 1 << 20) and libc.mallopt(m_arena_max, 2))


def _one_line(error: Exception) -> str:
    """The error's type and the first line of what the driver said (no SQL, no parameters)."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {reason[0] if reason else ''}"


def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 with Retry-After, and one line in the log, when the database cannot be reached."""
    LOG.error(f"{request.method} {request.url.path}: database unavailable: {_one_line(error)}")
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def create_app(
    settings: Settings,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    top_k: int = 5,
    warm: bool = True,
) -> FastAPI:
    """The service. `warm`: load every domain with a production gallery at start-up, in the
    background (/readyz answers 200 once done)."""
    pool = RecognizerPool(settings, top_k)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm:
            pool.warm_in_background()
        yield

    app = FastAPI(
        title="facerec",
        summary="Names the faces in a photo from the client's domain's production gallery.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below from installed files: FastAPI's own pages load a CDN
        redoc_url=None,
    )
    add_api_docs(app)
    for unavailable in DATABASE_DOWN:
        app.add_exception_handler(unavailable, database_unavailable)
    app.state.pool = pool
    app.state.settings = settings
    app.state.max_upload_bytes = max_upload_bytes
    bearer = HTTPBearer(auto_error=False, description="A token from `facerec clients add`.")

    def client_of(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> ClientView:
        if credentials is None or not credentials.credentials:
            raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
        with session_scope(settings.database_url) as session:
            client = authenticate(session, credentials.credentials)
        if client is None:
            raise _unauthorized("unknown or revoked token")
        return client

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        """A page for people: drop a photo, see the faces boxed and named (no token needed to
        load it; recognition asks for one, kept in the browser tab)."""
        html, headers = _page()
        return HTMLResponse(html, headers=headers)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process answers (no authentication)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "Nothing serves yet (with a token: its domain does not)"}},
    )
    def readyz(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> JSONResponse:
        """Without a token: 200 once at least one domain with a production gallery serves (a
        domain still loading is loaded at its first request), with how many serve, load or
        cannot load, and no domain named; 503 while none serves. With a client's token: its
        search order, each domain serving (with the version the database serves), loading,
        without a gallery, or unable to load and why; 503 until the token's domain serves."""
        try:
            wanted = pool.serving_domains()
        except Exception as error:  # the database itself is unavailable
            LOG.error(f"GET /readyz: database unavailable: {_one_line(error)}")
            return JSONResponse(
                {"detail": "database unavailable (the server log says why)"},
                503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        loaded = pool.loaded()
        if any(code not in loaded for code in wanted):
            pool.warm_in_background()  # a domain fixed or published since is loaded again
        if credentials is not None and credentials.credentials:
            return _readiness_of(client_of(credentials), loaded)
        failing = sum(code in pool.failures for code in wanted if code not in loaded)
        counts = {
            "serving": sum(code in loaded for code in wanted),
            "loading": sum(code not in loaded for code in wanted) - failing,
            "cannot_load": failing,
        }
        if counts["serving"] or not wanted:
            status = "ready" if counts["serving"] == len(wanted) else "partly ready"
            return JSONResponse({"status": status, **counts})
        detail = "loading" if counts["loading"] else "no domain can be loaded"
        return JSONResponse({"status": "not ready", "detail": detail, **counts}, 503)

    def _readiness_of(client: ClientView, loaded: dict[str, Recognizer]) -> JSONResponse:
        """/readyz for one client: the domains of its search order only. A domain serves once a
        loaded recognizer holds its gallery; the version is the one the database serves now
        (what the next request answers from, after a rollback too)."""
        order = order_of(client)
        in_use = {g.domain for recognizer in loaded.values() for g in recognizer.galleries}
        domains = []
        with session_scope(settings.database_url) as session:
            for code in order:
                row = serving_row(session, code)
                entry: dict[str, Any] = {"domain": code, "version": row.version if row else None}
                if row is None:
                    entry["state"] = "no gallery yet"
                elif code in in_use:
                    entry["state"] = "serving"
                elif code in pool.failures:
                    entry.update(state="cannot load", detail=public(pool.failures[code], settings))
                else:
                    entry["state"] = "loading"
                domains.append(entry)
        ready = any(entry["state"] == "serving" for entry in domains)
        body = {"status": "ready" if ready else "not ready", "domain": client.domain}
        return JSONResponse({**body, "search_order": domains}, 200 if ready else 503)

    @app.get("/v1/domains", tags=["domains"])
    def domains(client: ClientView = Depends(client_of)) -> dict[str, Any]:
        """The token's domain and where recognition looks: the domain, then those it inherits,
        each with the gallery version that serves it (null: none yet)."""
        with session_scope(settings.database_url) as session:
            order = search_order(session, client.domain)
        searched = []
        for code in order:
            pointer = serving_pointer(settings, code)
            searched.append(
                {
                    "domain": code,
                    "gallery_version": int(pointer["version"]) if pointer else None,
                    "operating_point": pointer.get("operating_point") if pointer else None,
                }
            )
        return {"client": client.name, "domain": client.domain, "search_order": searched}

    @app.get(
        "/v1/domains/{code}/stats",
        tags=["domains"],
        responses={403: {"description": "Another domain than the token's"}},
    )
    def stats(code: str, client: ClientView = Depends(client_of)) -> dict[str, Any]:
        """What `facerec stats --domain CODE --json` shows, for the token's own domain only."""
        from facerec_pipeline.sources.web import env_config
        from facerec_pipeline.stats import domain_stats

        if code != client.domain:
            raise HTTPException(403, detail=f"this token is for domain {client.domain!r} only")
        with session_scope(settings.database_url) as session:
            return domain_stats(session, code, env_config()["serp_cost_per_call"])

    def order_of(client: ClientView) -> list[str]:
        """The client's search order; 409 when its domain was removed since the token."""
        try:
            with session_scope(settings.database_url) as session:
                return search_order(session, client.domain)
        except DomainError as gone:
            raise HTTPException(409, detail=public(str(gone), settings)) from gone

    @app.get(
        "/v1/people",
        tags=["domains"],
        responses={409: {"description": "The token's domain was removed"}},
    )
    def people(
        client: ClientView = Depends(client_of),
        limit: int = Query(PEOPLE_LIMIT, ge=1, le=PEOPLE_LIMIT_MAX),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Who recognition can name: the people of the serving version of each domain of the
        search order (by domain, then name), each with the URL of their face's 400 px thumbnail
        (null until `facerec run` made it), its size, its blurhash and `placeholder`, the
        blurhash as a PNG data URI to paint before the thumbnail arrives. `limit` people from
        `offset` of `total`."""
        order = order_of(client)
        galleries, everyone = [], []
        with session_scope(settings.database_url) as session:
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

    @app.get(
        "/v1/previews/{artifact_id}",
        tags=["domains"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The preview (JPEG)"},
            404: {"description": "No such preview for this token, or its file is missing"},
        },
    )
    def preview(artifact_id: int, client: ClientView = Depends(client_of)) -> Response:
        """A 400 px thumbnail or 800 px web copy of a face or photo of the search order's
        domains, by the id a `thumbnail_url` of /v1/people names."""
        order = order_of(client)
        with session_scope(settings.database_url) as session:
            # An id no database integer holds (SQLite and PostgreSQL: 64 bits) is no row.
            in_range = 0 < artifact_id < 2**63
            artifact = session.get(Artifact, artifact_id) if in_range else None
            stored = (
                artifact.path
                if artifact is not None
                and artifact.stage in PREVIEW_STAGES
                and artifact.domain in order
                else None
            )
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

    @app.post(
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
    async def recognize(request: Request, client: ClientView = Depends(client_of)) -> Any:
        """Name the faces in one photo (multipart field `file`, or the raw bytes with an image
        Content-Type) from the token's domain, then the domains it inherits: the answer of
        `facerec recognize --json` for it, with the gallery versions and operating points that
        answered."""
        data, filename = await _read_upload(request, max_upload_bytes)
        return await run_in_threadpool(_recognize, pool, settings, client, data, filename)

    return app


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


def public(message: str, settings: Settings) -> str:
    """A message fit for a client: the server's storage root and temporary folder named, not
    shown."""
    for folder, name in (
        (str(settings.storage_dir.resolve()), "<storage>"),
        (str(settings.storage_dir), "<storage>"),
        (tempfile.gettempdir(), "<tmp>"),
    ):
        message = message.replace(folder, name)
    return message


def _recognize(
    pool: RecognizerPool,
    settings: Settings,
    client: ClientView,
    data: bytes,
    filename: str | None,
) -> dict[str, Any]:
    """Runs in a worker thread: the upload is decoded from its bytes by the one image reader
    (its byte and pixel limits), never written to a file."""
    try:
        with session_scope(settings.database_url) as session:
            order = search_order(session, client.domain)
    except DomainError as gone:  # the token's domain was removed since it was issued
        raise HTTPException(409, detail=str(gone)) from gone
    name = _public_name(filename) or "the upload"

    def answer(recognizer: Recognizer) -> dict[str, Any]:
        result = recognizer.recognize_image(data, name)
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
        result = pool.use(order, answer)
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
