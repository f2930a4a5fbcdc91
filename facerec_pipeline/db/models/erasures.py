"""Erasures (`facerec people erase`): the people a domain must not bring back, and the audit of
each erasure. No names are kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, utcnow


class ErasedPerson(Base):
    """A person erased from a domain (`facerec people erase`): the source must not bring them
    back. Only the sha256 of their `person_key` is kept (db/exclusions.py), never a name."""

    __tablename__ = "erased_people"
    __table_args__ = (UniqueConstraint("domain", "person_key_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Erasure(Base):
    """The audit of one erasure: who, when, how much was removed and the version published
    without the person. No name, no key: `person_key_sha256` links it to its exclusion."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_key_sha256: Mapped[str] = mapped_column(String(64))
    operator: Mapped[str] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    new_gallery_version: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
