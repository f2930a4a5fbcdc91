"""The routes for people and probes: the page at `/`, `/healthz` and `/readyz`."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.orm import Session

from facerec_pipeline.app.clients import ClientView
from facerec_pipeline.core.gallery.publish import serving_row
from facerec_pipeline.core.recognition.recognizer import Recognizer
from facerec_pipeline.serving.access import (
    bearer,
    client_of,
    database_unavailable,
    order_of,
    pool_of,
    public,
    request_session,
    settings_of,
)
from facerec_pipeline.serving.pool import RecognizerPool
from facerec_pipeline.settings import Settings

router = APIRouter()


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


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    """A page for people: drop a photo, see the faces boxed and named (no token needed to
    load it; recognition asks for one, kept in the browser tab)."""
    html, headers = _page()
    return HTMLResponse(html, headers=headers)


@router.get("/healthz", tags=["operations"])
def healthz() -> dict[str, str]:
    """The process answers (no authentication)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["operations"],
    responses={503: {"description": "Nothing serves yet (with a token: its domain does not)"}},
)
def readyz(
    request: Request,
    settings: Settings = Depends(settings_of),
    pool: RecognizerPool = Depends(pool_of),
    session: Session = Depends(request_session),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> JSONResponse:
    """Without a token: 200 once at least one domain with a production gallery serves (a
    domain still loading is loaded at its first request), with how many serve, load or
    cannot load, and no domain named; 503 while none serves. With a client's token: its
    search order, each domain serving (with the version the database serves), loading,
    without a gallery, or unable to load and why; 503 until the token's domain serves."""
    try:
        wanted = pool.serving_domains(session)
        session.commit()
    except Exception as error:  # the database itself is unavailable
        session.rollback()
        return database_unavailable(request, error)
    loaded = pool.loaded()
    if any(code not in loaded for code in wanted):
        pool.warm_in_background()  # a domain fixed or published since is loaded again
    if credentials is not None and credentials.credentials:
        client = client_of(session, credentials)
        return _readiness_of(client, loaded, settings, pool, session)
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


def _readiness_of(
    client: ClientView,
    loaded: dict[str, Recognizer],
    settings: Settings,
    pool: RecognizerPool,
    session: Session,
) -> JSONResponse:
    """/readyz for one client: the domains of its search order only. A domain serves once a
    loaded recognizer holds its gallery; the version is the one the database serves now
    (what the next request answers from, after a rollback too)."""
    order = order_of(client, session, settings)
    in_use = {g.domain for recognizer in loaded.values() for g in recognizer.galleries}
    domains = []
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
