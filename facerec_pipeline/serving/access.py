"""What every route of `facerec serve` shares: the settings and recognizers of the running app,
the client a bearer token names, its search order, and messages fit for a client. No Dagster
here."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator

import sqlalchemy.exc
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from facerec_pipeline.app.clients import ClientView, authenticate
from facerec_pipeline.app.domains import DomainError, search_order
from facerec_pipeline.db.engine import DatabaseUnavailable, driver_reason, get_engine
from facerec_pipeline.serving.pool import RecognizerPool
from facerec_pipeline.settings import Settings

LOG = logging.getLogger("facerec.serve")
# The database cannot be reached (PostgreSQL stopped, a network cut, SQLite's file locked or
# damaged): every endpoint answers 503 with Retry-After, and the log has one line per request.
DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    DatabaseUnavailable,
)
RETRY_AFTER_S = 30
bearer = HTTPBearer(auto_error=False, description="A token from `facerec clients add`.")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def pool_of(request: Request) -> RecognizerPool:
    return request.app.state.pool


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def request_session(settings: Settings = Depends(settings_of)) -> Iterator[Session]:
    """The request's one database session. Each step ends its own transaction (commit), so no
    connection is held while a request waits for a recognizer or searches a photo."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def client_of(
    session: Session = Depends(request_session),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> ClientView:
    """The client whose token the request carries; 401 without a valid one."""
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token (Authorization: Bearer <token>)")
    client = authenticate(session, credentials.credentials)
    session.commit()
    if client is None:
        raise unauthorized("unknown or revoked token")
    return client


def order_of(client: ClientView, session: Session, settings: Settings) -> list[str]:
    """The client's search order; 409 when its domain was removed since the token."""
    try:
        order = search_order(session, client.domain)
    except DomainError as gone:
        raise HTTPException(409, detail=public(str(gone), settings)) from gone
    session.commit()
    return order


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


def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 with Retry-After, and one line in the log, when the database cannot be reached."""
    LOG.error(
        f"{request.method} {request.url.path}: database unavailable: "
        f"{type(error).__name__}: {driver_reason(error)}"
    )
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
