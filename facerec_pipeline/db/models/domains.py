"""Domains: their settings, the domains they inherit from, and the client apps allowed to ask
`facerec serve` for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, Timestamps, utcnow


class Domain(Timestamps, Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # Where candidates and photos come from: "wikidata" or "folder" (source_path = the folder).
    source: Mapped[str] = mapped_column(String(20), default="wikidata")
    source_path: Mapped[str | None] = mapped_column(Text)
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    occupations: Mapped[list[str]] = mapped_column(JSON, default=list)
    local_language: Mapped[str | None] = mapped_column(String(20))
    min_sitelinks: Mapped[int] = mapped_column(Integer, default=10)
    max_people: Mapped[int] = mapped_column(Integer, default=500)
    images_per_person: Mapped[int] = mapped_column(Integer, default=10)
    serp_budget: Mapped[float] = mapped_column(Float, default=0.0)
    refresh_cron: Mapped[str] = mapped_column(String(100), default="0 3 * * 1")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Automation and the checks that gate promotion.
    retrain_min_new_faces: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_faces_per_person: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_loo_accuracy: Mapped[float] = mapped_column(Float, default=0.8, server_default="0.8")
    max_gallery_shrink: Mapped[float] = mapped_column(Float, default=0.3, server_default="0.3")
    # Open-set recognition: the false-accept rate each version is calibrated for, and how far a
    # new version's expected DIR may fall below the serving one's before it is stopped.
    target_far: Mapped[float] = mapped_column(Float, default=0.01, server_default="0.01")
    max_quality_drop: Mapped[float] = mapped_column(Float, default=0.05, server_default="0.05")
    # The face model of the domain's galleries (core/face_models.py). Domains older than the
    # setting keep `dlib`, what they were built with (migration 0012).
    face_model: Mapped[str] = mapped_column(String(40), default="sface", server_default="sface")
    # Set by a rollback: this version serves until an operator unpins it or a version built
    # after `pinned_at` (from new content) passes its checks.
    pinned_version: Mapped[int | None] = mapped_column(Integer)
    pinned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DomainDataset(Base):
    """Ordered inheritance: `domain` also searches `inherits` (lower priority number first)."""

    __tablename__ = "domain_datasets"
    __table_args__ = (UniqueConstraint("domain", "inherits"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code", ondelete="CASCADE"))
    inherits: Mapped[str] = mapped_column(ForeignKey("domains.code"))
    priority: Mapped[int] = mapped_column(Integer)


class Client(Base):
    """A client app allowed to ask `facerec serve`, for one domain (and those it inherits). Only
    the sha256 of its token is kept; the token itself is shown once, when it is issued."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
