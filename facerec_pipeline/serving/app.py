"""`facerec serve`'s HTTP service for client apps: a client's bearer token (clients.py) names
its domain, and the domain only; recognition searches that domain's production gallery, then
those of the domains it inherits, exactly as `facerec recognize` does. The face engine and the
galleries stay loaded (one Recognizer per search order), each request first asks the database
which version serves (Recognizer.refresh), so a published version or a rollback answers without
a restart. No Dagster here: an import contract (pyproject.toml) holds serving/ and the stats
it shows to that."""

from __future__ import annotations

import ctypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from facerec_pipeline.serving.access import DATABASE_DOWN, database_unavailable
from facerec_pipeline.serving.pool import RecognizerPool
from facerec_pipeline.serving.routes import domains, operations, recognition
from facerec_pipeline.serving.routes.recognition import DEFAULT_MAX_UPLOAD_BYTES
from facerec_pipeline.settings import Settings

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


def create_app(
    settings: Settings,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    top_k: int = 5,
    warm: bool = True,
) -> FastAPI:
    """The service: its routes (serving/routes/), the settings and recognizers they share
    (app.state, read by serving/access.py), and a 503 for an unreachable database. `warm`: load
    every domain with a production gallery at start-up, in the background (/readyz says when
    one serves)."""
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
    for routes in (operations, domains, recognition):
        app.include_router(routes.router)
    return app
