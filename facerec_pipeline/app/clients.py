"""Client tokens: a client app gets a token for one domain (and the domains it inherits); only
the token's sha256 is stored, and a revoked or unknown token reaches nothing. No Dagster here."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.db.models import Client

TOKEN_PREFIX = "frc_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ClientError(ValueError):
    pass


@dataclass(frozen=True)
class ClientView:
    """What may be shown of a client: never its token."""

    name: str
    domain: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_client(session: Session, name: str, domain: str) -> str:
    """Issue a token for a new client of `domain`; returns the token, which is not stored and
    cannot be shown again."""
    if not NAME_PATTERN.match(name):
        raise ClientError(
            f"client name {name!r} must be 1-100 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit"
        )
    get_domain(session, domain)  # DomainError naming the known domains when unknown
    if session.scalar(select(Client.id).where(Client.name == name)) is not None:
        raise ClientError(
            f"a client named {name!r} exists: `facerec clients revoke {name}` and add it again "
            "under another name to issue a new token"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Client(name=name, domain=domain, token_sha256=token_digest(token)))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> ClientView | None:
    """The active client holding `token`, or None (unknown or revoked)."""
    client = session.scalar(select(Client).where(Client.token_sha256 == token_digest(token)))
    if client is None or client.revoked_at is not None:
        return None
    return _view(client)


def list_clients(session: Session) -> list[ClientView]:
    return [_view(c) for c in session.scalars(select(Client).order_by(Client.name))]


def revoke_client(session: Session, name: str) -> ClientView:
    client = session.scalar(select(Client).where(Client.name == name))
    if client is None:
        known = ", ".join(c.name for c in list_clients(session)) or "none"
        raise ClientError(f"no client named {name!r} (clients: {known})")
    client.revoked_at = client.revoked_at or datetime.now(UTC)
    return _view(client)


def _view(client: Client) -> ClientView:
    return ClientView(client.name, client.domain, client.created_at, client.revoked_at)
