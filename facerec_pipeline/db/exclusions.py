"""People erased from a domain, whom its source must not bring back. Only the sha256 of the
person's source key (`people.person_key`, "wikidata:Q42" or "folder:<name>") is stored; a
source's candidates are compared by the same hash. No Dagster here."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import ErasedPerson


def person_key_hash(person_key: str) -> str:
    return hashlib.sha256(f"facerec-person-key:{person_key}".encode()).hexdigest()


def excluded_key_hashes(session: Session, domain: str) -> set[str]:
    return set(
        session.scalars(select(ErasedPerson.person_key_sha256).where(ErasedPerson.domain == domain))
    )


def is_excluded(session: Session, domain: str, person_key: str) -> bool:
    return person_key_hash(person_key) in excluded_key_hashes(session, domain)
