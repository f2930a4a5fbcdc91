"""The pipeline's own bookkeeping: its runs, the lineage of each stage output, the files it wrote
under the storage root, and the photos a stage could not process."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, utcnow


class TrainingSession(Base):
    __tablename__ = "training_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rejects_by_reason: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    estimated_serp_cost: Mapped[float] = mapped_column(Float, default=0.0)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AssetLineage(Base):
    """Written by the table IO manager with every stage output it stores."""

    __tablename__ = "asset_lineage"

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_key: Mapped[str] = mapped_column(String(200), index=True)
    partition: Mapped[str | None] = mapped_column(String(50), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str | None] = mapped_column(String(50))
    row_count: Mapped[int] = mapped_column(Integer)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    # [{"asset_key", "partition", "lineage_id", "run_id"}] of the inputs this output was made from.
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Artifact(Base):
    """One file the pipeline wrote under the storage root (core/artifacts/store.py): which stage
    made it from which photo (content sha256; None for a gallery's files) with which parameters
    (canonical JSON), and what it holds (sha256, size, dimensions, a blurhash for previews)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("domain", "image_sha256", "stage", "parameters"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(30))
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    gallery_version: Mapped[int | None] = mapped_column(Integer)
    blurhash: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessingFailure(Base):
    """A photo a stage could not process (a crop that could not be written, a preview of a
    broken file): the error and how often it was tried. Tried again on the next run until
    MAX_ATTEMPTS (core/artifacts/failures.py); removed once it succeeds."""

    __tablename__ = "processing_failures"
    __table_args__ = (UniqueConstraint("domain", "image_sha256", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(30))
    item: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[str | None] = mapped_column(String(64))
    first_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
