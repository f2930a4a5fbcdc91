"""What the sources offered: the people of a domain, their photos, what a source could not give
(and why), and the paid image searches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, Timestamps, utcnow
from facerec_pipeline.db.source_refs import SourceRef, SourceRefType


class Person(Timestamps, Base):
    __tablename__ = "people"
    __table_args__ = (
        UniqueConstraint("domain", "normalized_name"),
        UniqueConstraint("domain", "person_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    # Stable key within the domain: "wikidata:Q42" or "folder:<folder name>".
    person_key: Mapped[str] = mapped_column(String(300))
    full_name: Mapped[str] = mapped_column(String(300))
    normalized_name: Mapped[str] = mapped_column(String(300))
    wikidata_id: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    occupation: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    sitelinks: Mapped[int | None] = mapped_column(Integer)
    primary_image_url: Mapped[str | None] = mapped_column(Text)
    commons_category: Mapped[str | None] = mapped_column(String(300))
    # Where the source keeps this person's photos: FolderRef or CommonsRef (db/source_refs.py).
    source_ref: Mapped[SourceRef | None] = mapped_column(SourceRefType)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Set when the person is no longer offered by the source; the row and its history stay.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Image(Timestamps, Base):
    """One photo of one person as the source offered it. `status` is about acquisition
    (readable, licence acceptable); face validation outcomes live in `faces`."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("domain", "person_id", "source_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    perceptual_hash: Mapped[str | None] = mapped_column(String(16))
    file_path: Mapped[str | None] = mapped_column(Text)
    file_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    mime: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(30))
    source_url: Mapped[str] = mapped_column(Text)
    description_url: Mapped[str | None] = mapped_column(Text)
    page_id: Mapped[int | None] = mapped_column(Integer)
    source_sha1: Mapped[str | None] = mapped_column(String(40))
    license_short_name: Mapped[str | None] = mapped_column(String(200))
    license_url: Mapped[str | None] = mapped_column(Text)
    usage_terms: Mapped[str | None] = mapped_column(Text)
    artist_html: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text)
    credit: Mapped[str | None] = mapped_column(Text)
    attribution: Mapped[str | None] = mapped_column(Text)
    attribution_required: Mapped[bool | None] = mapped_column(Boolean)
    copyrighted: Mapped[bool | None] = mapped_column(Boolean)
    restrictions: Mapped[str | None] = mapped_column(Text)
    retrieved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    rejection_reason: Mapped[str | None] = mapped_column(String(50))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SourceSkip(Base):
    """Why the source gave nothing for a person or a file: `no_photos`, `missing_file`,
    `not_an_image`, `license_not_free`, `fetch_failed`, ... The latest state per domain and person
    (a re-run replaces the rows of the people it fetched)."""

    __tablename__ = "source_skips"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    source: Mapped[str] = mapped_column(String(30))
    item: Mapped[str | None] = mapped_column(Text)  # file title or URL; None for the person
    reason: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SerpCall(Base):
    """One paid image search call and its estimated cost."""

    __tablename__ = "serp_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    run_id: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(50))
    query: Mapped[str] = mapped_column(Text)
    result_count: Mapped[int] = mapped_column(Integer, default=0)
    estimated_cost: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
