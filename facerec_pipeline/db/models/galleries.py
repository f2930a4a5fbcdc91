"""Gallery versions: what each serves and its status, the identity decision for each of its
candidate faces, and its evaluations on labelled probe photos."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, utcnow

PRODUCTION = "production"


class Gallery(Base):
    __tablename__ = "galleries"
    __table_args__ = (
        UniqueConstraint("domain", "version"),
        # The database is the one truth of what serves: at most one production row per domain.
        Index(
            "one_production_version_per_domain",
            "domain",
            unique=True,
            sqlite_where=text(f"status = '{PRODUCTION}'"),
            postgresql_where=text(f"status = '{PRODUCTION}'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    model_config: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    batch_paths: Mapped[list[str]] = mapped_column(JSON, default=list)
    person_count: Mapped[int] = mapped_column(Integer)
    face_count: Mapped[int] = mapped_column(Integer)
    quarantined_count: Mapped[int] = mapped_column(Integer, default=0)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # candidate (built; its checks not run or passed) | rejected (a blocking check failed) |
    # production (serves now; one per domain) | published (served before; a rollback target).
    # The pointer file recognized_faces_prod/{domain}/gallery.json is written from this.
    status: Mapped[str] = mapped_column(String(20), default="candidate", server_default="candidate")
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # The open-set decision rule calibrated on this version (recognition/open_set.py).
    operating_point: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # sha256 of every file the version serves, by path relative to the storage root; checked
    # before the version is loaded to serve, promoted or rolled back to (None: built before 0005).
    file_checksums: Mapped[dict[str, str] | None] = mapped_column(JSON)

    @hybrid_property
    def is_prod(self) -> bool:
        """Serves production now (read from `status`, the one record of it)."""
        return self.status == PRODUCTION

    @is_prod.inplace.expression
    @classmethod
    def _is_prod_expression(cls):
        return cls.status == PRODUCTION


class GalleryFace(Base):
    """Identity decision for each candidate face of a gallery version: accepted into the gallery,
    or quarantined with the reason (never deleted)."""

    __tablename__ = "gallery_faces"
    __table_args__ = (UniqueConstraint("gallery_id", "face_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id"), index=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    identity_status: Mapped[str] = mapped_column(String(20))  # accepted | quarantined
    identity_reason: Mapped[str | None] = mapped_column(String(50))
    centroid_distance: Mapped[float | None] = mapped_column(Float)


class GalleryEvaluation(Base):
    """`facerec evaluate`: a gallery version scored on labelled probe photos."""

    __tablename__ = "gallery_evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id"), index=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    probes_dir: Mapped[str] = mapped_column(Text)
    unknown_dir: Mapped[str | None] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
